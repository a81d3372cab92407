"""The SVM solvers behind the heads' grid search (search_heads in grid_search.py, the one entry point).

routing.py decides which solver fits each head; fast.py runs the fast backend through those solvers
(kernels.py: libsvm on a precomputed kernel; dual.py: LinearSVC's problem by libsvm; primal.py: Newton's
method in the primal), reference.py the plain GridSearchCV it is checked against.
"""
