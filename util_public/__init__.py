"""Shared library of the memorize-then-generalize framework.

Entry points under data_generation/, training/ and evaluation/ are thin Hydra wrappers;
all behaviour lives here, in modules named by concept.
"""
