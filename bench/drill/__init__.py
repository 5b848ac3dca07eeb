"""The drill: `make drill` (python -m bench.drill)."""
