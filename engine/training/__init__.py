"""Training jobs (Qt-free generators yielding ``Progress``): our StyleGAN2 on the procedural set
(``stylegan2``) and the factor regressor (``regressor``); ``checkpoint`` writes files atomically."""
