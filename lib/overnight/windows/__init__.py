"""Stage windows: BIDS recordings -> one HDF5 window cache with RT targets, and the
subject-disjoint split. ``recordings`` reads and cuts one recording, ``cache`` owns the
window cache's schema, ``build`` runs the stage, ``split`` holds out subjects."""
