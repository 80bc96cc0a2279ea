"""Patient files and the authorisation decision point."""
