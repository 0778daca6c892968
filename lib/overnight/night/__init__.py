"""The host side of a night: the driver (lock, preflight, stages, report), the stage runner,
the status view, the preflight's slice and the docker runner.

Standard library only, by structure: nothing here imports numpy, torch or h5py (a test
guards it), so a docker night needs no virtualenv on the host.
"""
