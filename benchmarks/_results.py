"""Write one benchmark's section of benchmarks/RESULTS.md, with machine and date."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import sklearn

    mem = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{mem}; "
            f"Python {platform.python_version()}, numpy {numpy.__version__}, "
            f"scikit-learn {sklearn.__version__}")


def write_section(name: str, title: str, body: str, path: Path = RESULTS) -> None:
    """Replace the section ``name`` (between HTML comment markers) or append it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = (f"{start}\n## {title}\n\n_Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on "
               f"{machine()}._\n\n{body.strip()}\n{end}")
    text = path.read_text() if path.exists() else "# Benchmark results\n\n" \
        "Written by the scripts in this folder (`make bench`). Ratios are measured " \
        "against a baseline run in the same process.\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
