"""Live operations: sensor readings and alarm rules, cases and dispatch by grid with time limits,
citizen reports, the wall's figures. Neither the spatial core (gis/) nor a layer (layers/)."""
