"""Optimization: Optuna studies of models and strategies, overfitting statistics (DSR, PBO),
feature selection and compression. Heavy imports (Optuna) happen where they are used."""
