// Package training holds what every trainer shares: progress lines with rate
// and ETA (Meter), checkpoints that make an interrupted run resumable
// (SaveCheckpoint, LatestCheckpoint, LoadCheckpoint), counter-based random
// streams so that resuming needs no generator state (Stream), and the guard
// that stops a run on a non-finite loss (CheckFinite).
//
// The trainers themselves live in sub-packages: dreambooth (personalisation),
// ddpo (RL alignment), evaluate (metrics over prompt sets) and toyworld (the
// built-in demo world). Nothing here imports store or app: the desktop app
// and the command line adapt these to their own persistence and display.
package training
