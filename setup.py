# cffi builds hf_fast._native from native/ at install time; everything else is in setup.cfg.
from setuptools import setup

setup(cffi_modules=["native/build_native.py:ffibuilder"])
