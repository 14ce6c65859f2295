"""Repair methods compared by the sick-zoo benchmark; each ``run_<method>(case, seed, space,
pad_s, budget) -> MethodResult`` lives in its own module."""
