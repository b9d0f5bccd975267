"""Trained generators at work: a checkpoint as a ready generator (`translator`), files, folders
and videos translated (`files`), export (`export`) and the web page (`serve`)."""
