"""Built-in plugins, written exactly as a third party would write them."""
