"""The pure domain: no clock, environment, network or database in here (see DESIGN.md)."""
