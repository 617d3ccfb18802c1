package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// Ensure PutCheckpoint accepts LoRA and full checkpoints of existing runs
// and rejects malformed ones.
func TestDB_PutCheckpoint_validation(t *testing.T) {
	db := mustOpen(t)
	run := mustRun(t, db, Run{Kind: KindPersonalize}).ID
	tensors := []byte("safetensors bytes")
	fullHash := strings.Repeat("ab", 32)
	full := filepath.Join(db.CheckpointDir(), "unet.safetensors")
	for _, tc := range []struct {
		name    string
		c       Checkpoint
		tensors []byte
		want    error
	}{
		{"lora", Checkpoint{RunID: run, Kind: CheckpointLoRA, Step: 100}, tensors, nil},
		{"full", Checkpoint{RunID: run, Kind: CheckpointFull, Step: 200, Path: full, Hash: fullHash, Size: 1 << 32}, nil, nil},
		{"lora without tensors", Checkpoint{RunID: run, Kind: CheckpointLoRA}, nil, ErrInvalid},
		{"lora with path", Checkpoint{RunID: run, Kind: CheckpointLoRA, Path: full}, tensors, ErrInvalid},
		{"full with tensors", Checkpoint{RunID: run, Kind: CheckpointFull, Path: full, Hash: fullHash}, tensors, ErrInvalid},
		{"full without path", Checkpoint{RunID: run, Kind: CheckpointFull, Hash: fullHash}, nil, ErrInvalid},
		{"full with bad hash", Checkpoint{RunID: run, Kind: CheckpointFull, Path: full, Hash: "abc"}, nil, ErrInvalid},
		{"bad kind", Checkpoint{RunID: run, Kind: "ckpt"}, tensors, ErrInvalid},
		{"negative step", Checkpoint{RunID: run, Kind: CheckpointLoRA, Step: -5}, tensors, ErrInvalid},
		{"unknown run", Checkpoint{RunID: "nope", Kind: CheckpointLoRA}, tensors, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			err := db.PutCheckpoint(&c, tc.tensors)
			wantErr(t, err, tc.want)
			if err != nil {
				return
			}
			got, err := db.Checkpoint(c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got != c {
				t.Errorf("stored %+v, want %+v", got, c)
			}
			if tc.c.Kind == CheckpointLoRA && (got.Hash != sha(tensors) || got.Size != int64(len(tensors))) {
				t.Errorf("LoRA hash/size %s/%d", got.Hash, got.Size)
			}
		})
	}
}

// Ensure Checkpoints lists by step and LatestCheckpoint picks the highest
// step, per run.
func TestDB_LatestCheckpoint_highestStep(t *testing.T) {
	db := mustOpen(t)
	rng := rand.New(rand.NewPCG(5, 6))
	run := mustRun(t, db, Run{Kind: KindPersonalize}).ID
	other := mustRun(t, db, Run{Kind: KindPersonalize}).ID
	if _, err := db.LatestCheckpoint(run); !errors.Is(err, ErrNotFound) {
		t.Errorf("LatestCheckpoint of a run without any: %v", err)
	}
	for _, step := range []int{400, 100, 300, 200} {
		if err := db.PutCheckpoint(&Checkpoint{RunID: run, Kind: CheckpointLoRA, Step: step}, randBytes(rng, 64)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutCheckpoint(&Checkpoint{RunID: other, Kind: CheckpointLoRA, Step: 999}, randBytes(rng, 64)); err != nil {
		t.Fatal(err)
	}
	cps, err := db.Checkpoints(run)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cps {
		if c.Step != (i+1)*100 || c.RunID != run {
			t.Errorf("checkpoint %d: %+v", i, c)
		}
	}
	latest, err := db.LatestCheckpoint(run)
	if err != nil || latest.Step != 400 {
		t.Errorf("LatestCheckpoint = %+v, %v; want step 400", latest, err)
	}
}

// Ensure replacing a LoRA checkpoint by a full one drops its tensors, and
// CheckpointTensors of a full checkpoint is ErrNotFound.
func TestDB_PutCheckpoint_loraToFull(t *testing.T) {
	db := mustOpen(t)
	run := mustRun(t, db, Run{Kind: KindPersonalize}).ID
	tensors := []byte("lora")
	c := Checkpoint{RunID: run, Kind: CheckpointLoRA, Step: 1}
	if err := db.PutCheckpoint(&c, tensors); err != nil {
		t.Fatal(err)
	}
	if got, err := db.CheckpointTensors(c.ID); err != nil || !bytes.Equal(got, tensors) {
		t.Fatalf("CheckpointTensors = %q, %v", got, err)
	}
	c.Kind, c.Path, c.Hash, c.Size = CheckpointFull, "/models/full.safetensors", strings.Repeat("0", 64), 10
	if err := db.PutCheckpoint(&c, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CheckpointTensors(c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("tensors of a full checkpoint: %v", err)
	}
}

// Ensure DeleteCheckpoint removes record and tensors.
func TestDB_DeleteCheckpoint_removesTensors(t *testing.T) {
	db := mustOpen(t)
	run := mustRun(t, db, Run{Kind: KindPersonalize}).ID
	c := Checkpoint{RunID: run, Kind: CheckpointLoRA}
	if err := db.PutCheckpoint(&c, []byte("lora")); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteCheckpoint(c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Checkpoint(c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("record after delete: %v", err)
	}
	if _, err := db.CheckpointTensors(c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("tensors after delete: %v", err)
	}
	wantErr(t, db.DeleteCheckpoint(c.ID), ErrNotFound)
}
