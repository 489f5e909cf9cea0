"""MkDocs hook: publishes files that live outside docs/ as pages and images of the site.

`benchmarks/RESULTS.md` (the measured tables) becomes the page `results.md`, and the demo's
figure from `benchmarks/figures/` becomes `images/demo-learning-curves.png`, so each file
keeps one home in the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

REPO_FILES = {
    "results.md": "benchmarks/RESULTS.md",
    "images/demo-learning-curves.png": "benchmarks/figures/demo-learning-curves.png",
}
"""Site path -> repository path."""


def on_files(files: Files, config: Any) -> Files:
    root = Path(config.config_file_path).resolve().parent
    for site_path, repo_path in REPO_FILES.items():
        source = root / repo_path
        if not source.is_file():
            raise FileNotFoundError(f"docs: {repo_path} is missing (published as {site_path})")
        files.append(File.generated(config, site_path, abs_src_path=str(source)))
    return files
