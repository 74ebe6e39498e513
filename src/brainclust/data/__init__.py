"""Built-in data: the demo set generator (:mod:`.demo`)."""
