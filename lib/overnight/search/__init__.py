"""The hyperparameter search: an Optuna study of the ``[train]`` settings, judged on the
tune subjects, in the hours the chain leaves free (stage search, after the models).

``space`` holds what is searched (one table: each parameter, its range, why); ``study``
where the study lives, its name (a hash of the data) and how it survives kills; ``worker``
runs trials; ``stage`` runs the workers until the search's end and makes the best trial the
night's ``search`` model; ``defaults`` prints the best values as a TOML diff.
"""
