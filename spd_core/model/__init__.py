"""The model being decomposed: factors, causal-importance functions and their kernels, masks,
tied components, and the component model that runs the target with any masks."""
