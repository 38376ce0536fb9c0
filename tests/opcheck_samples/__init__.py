"""opcheck samples, one module per kernel (`<kernel>.py` with `samples(kernel, device)`
returning {op name: [argument tuples]}). tests/test_ops_registry.py imports every module here
and fails on any op of _schemas.SCHEMAS that none of them covers."""
