"""Audio I/O and DSP: devices, the PortAudio bridge, resampling, playout, echo cancellation, voice detection."""
