"""What every model goes through: the Trainer set-up, neuron importance (Eq. 4), layer-wise distillation
(Eqs. 5-7) and MPOE's gradient mask."""
