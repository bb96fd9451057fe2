"""The conversation: the device's one state machine.

- machine.py: `Conversation`, its rules (which input leads to which step);
- core.py: its state and the steps the rules share;
- state.py: the small values it is made of (`State` shown, `Phase`, `LinkView`, `Faults`, `Turn`);
- ports.py: what it drives and asks (`Link`, `Responses`, `Playback`, `PreRoll`) and `NotNow`;
- trim.py: `SilenceTrimmer`, which frames of a push-to-talk turn go up (not the silence around the speech);
- settings.py: `ConversationSettings` (`[conversation]` in config.toml).

Nothing is imported here, so that reading the settings (config.py, `edgevoice ctl`) loads none of the rest.
"""
