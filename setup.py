"""The compiled module only (the decoders' fast path, panopticon/processing/_loader.pyx); the rest of the
package is described in pyproject.toml. Kept here: ext-modules in pyproject.toml is experimental in setuptools."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("panopticon.processing._loader", ["panopticon/processing/_loader.pyx"])])
