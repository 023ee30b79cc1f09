"""The parts semi-supervised methods are built from: photometric augmentation and mixing, pseudo-label losses, EMA teachers, teacher-student diagnostics."""
