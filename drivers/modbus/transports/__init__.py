"""One module per Modbus bus type (``[[bus]] type = ...``); ``drivers.modbus.registry`` lists
them."""
