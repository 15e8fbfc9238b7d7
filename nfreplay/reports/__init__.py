"""See the module docs."""
