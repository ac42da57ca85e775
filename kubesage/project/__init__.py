"""A user's project: finding and loading its pipeline files (``loader``), writing a new one
(``scaffold``, ``kubesage init``) and the built-in sample data (``sample_data``)."""
