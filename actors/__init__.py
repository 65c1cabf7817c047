"""Ray glue: host actors that hold entities, their directory, the FHE worker deployment."""
