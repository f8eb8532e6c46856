"""What build is running: version, git commit, build time."""

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VersionInfo:
    version: str
    git_commit: str
    build_time: str

    def as_dict(self) -> dict[str, str]:
        return {
            "version": self.version,
            "git_commit": self.git_commit,
            "build_time": self.build_time,
        }


def _git_head(start: Path) -> str:
    # From a checkout, read .git directly: no subprocess, no git binary needed.
    for folder in (start, *start.parents):
        head = folder / ".git" / "HEAD"
        if head.is_file():
            ref = head.read_text().strip()
            if ref.startswith("ref: "):
                target = folder / ".git" / ref[5:]
                if target.is_file():
                    return target.read_text().strip()[:12]
                packed = folder / ".git" / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        if line.endswith(ref[5:]):
                            return line.split()[0][:12]
                return "unknown"
            return ref[:12]
    return "unknown"


def version_info(git_commit: str | None = None, build_time: str | None = None) -> VersionInfo:
    try:
        version = importlib.metadata.version("alertrelay")
    except importlib.metadata.PackageNotFoundError:
        version = "0.0.0+unknown"
    commit = (
        git_commit or os.environ.get("ALERTRELAY_GIT_COMMIT") or _git_head(Path(__file__).parent)
    )
    built = build_time or os.environ.get("ALERTRELAY_BUILD_TIME") or "unknown"
    return VersionInfo(version, commit, built)
