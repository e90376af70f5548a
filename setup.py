"""Leaves the developers' modules out of the wheel; everything else is in pyproject.toml.

The test helpers live in the package so the tests and the benchmarks share them, and
the font script next to the font it makes, but production never imports them
(tests/test_packaging.py runs the installed wheel without them).
"""

from setuptools import setup
from setuptools.command.build_py import build_py

DEVELOPMENT_MODULES = {("bot", "testing"), ("bot", "testing_db"), ("bot.fonts", "make_subset")}


class BuildPyForProduction(build_py):
    def find_package_modules(self, package, package_dir):
        return [entry for entry in super().find_package_modules(package, package_dir)
                if entry[:2] not in DEVELOPMENT_MODULES]


setup(cmdclass={"build_py": BuildPyForProduction})
