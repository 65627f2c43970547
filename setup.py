"""Adds the repo's recipes, calibration recipes and trtexec script to the wheel as package data.

They stay where they are in the repo (recipes/, calibration/, export/) and are copied into
``bridge_edge/_data/`` at build time, so ``load_recipe('default')`` works after a normal
(non-editable) install; ``bridge_edge.resources`` prefers the repo copy when it exists.
Everything else is declared in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (repo folder, glob) -> bridge_edge/_data/<repo folder>/
REPO_DATA = (("recipes", "*.toml"), ("calibration", "*.toml"), ("export", "*.sh"))


class BuildPyWithRepoData(build_py):
    def run(self):
        super().run()
        for folder, pattern in REPO_DATA:
            target = Path(self.build_lib) / "bridge_edge" / "_data" / folder
            self.mkpath(str(target))
            for path in sorted((ROOT / folder).glob(pattern)):
                self.copy_file(str(path), str(target / path.name), preserve_mode=True)


setup(cmdclass={"build_py": BuildPyWithRepoData})
