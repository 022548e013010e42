"""``cli --version``: the package's version, torch's, and the git commit of a checkout."""

from __future__ import annotations

from pipeline.identity import software_versions


def version_line() -> str:
    """``conclugen 0.1.0, torch 2.9.1, git 0123456789ab`` (no git part outside a checkout)."""
    versions = software_versions()
    line = f"conclugen {versions['conclugen']}, torch {versions['torch']}"
    commit = versions["git_commit"]
    return line + (f", git {commit[:12]}" if commit != "unknown" else "")
