package training

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// A checkpoint is one safetensors file, ckpt-NNNNNNNN.safetensors in a run's
// checkpoint folder, holding
//   - "param/<name>": every trainable tensor, float32, under its Tensor.Name;
//   - "optimizer": the AdamW state (gpu.AdamW.SaveState bytes) as U8;
//   - metadata "format" = CheckpointFormat, "step", and "state": the
//     trainer's own JSON (configuration, metric history, ...).
//
// Files are written atomically (temporary file, then rename), so a crash
// leaves either the previous set of checkpoints or the new one; a damaged
// file is skipped by LatestCheckpoint in favour of the one before.

// CheckpointFormat names the layout above in the file's metadata.
const CheckpointFormat = "instructbooth-checkpoint/1"

var ckptName = regexp.MustCompile(`^ckpt-(\d{8})\.safetensors$`)

// CheckpointPath is the file name of the checkpoint after step in dir.
func CheckpointPath(dir string, step int) string {
	return filepath.Join(dir, fmt.Sprintf("ckpt-%08d.safetensors", step))
}

// SaveCheckpoint writes the state after step: params (each with a unique
// Name), the optimizer (may be nil) and state (marshalled as JSON). It then
// deletes all but the newest keep checkpoints (keep <= 0 keeps all).
func SaveCheckpoint(dir string, step int, params []*gpu.Tensor, opt *gpu.AdamW, state any, keep int) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	tensors := map[string]safetensors.Tensor{}
	for _, p := range params {
		if p.Name == "" {
			return "", fmt.Errorf("checkpoint: a parameter of shape %v has no name", p.Shape())
		}
		v, err := p.Read()
		if err != nil {
			return "", fmt.Errorf("checkpoint: reading %s: %w", p.Name, err)
		}
		key := "param/" + p.Name
		if _, dup := tensors[key]; dup {
			return "", fmt.Errorf("checkpoint: two parameters named %q", p.Name)
		}
		tensors[key] = safetensors.F32Tensor(v, p.Shape()...)
	}
	if opt != nil {
		var buf bytes.Buffer
		if err := opt.SaveState(&buf); err != nil {
			return "", fmt.Errorf("checkpoint: optimizer state: %w", err)
		}
		tensors["optimizer"] = safetensors.Tensor{DType: safetensors.U8, Shape: []int{buf.Len()}, Data: buf.Bytes()}
	}
	js, err := json.Marshal(state)
	if err != nil {
		return "", fmt.Errorf("checkpoint: state: %w", err)
	}
	meta := map[string]string{"format": CheckpointFormat, "step": strconv.Itoa(step), "state": string(js)}
	path := CheckpointPath(dir, step)
	if err := safetensors.WriteFile(path, tensors, meta); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if keep > 0 {
		steps, _ := checkpointSteps(dir)
		for i := 0; i < len(steps)-keep; i++ {
			if steps[i] != step {
				os.Remove(CheckpointPath(dir, steps[i]))
			}
		}
	}
	return path, nil
}

// checkpointSteps lists the steps of dir's checkpoint files, ascending.
func checkpointSteps(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var steps []int
	for _, e := range ents {
		if m := ckptName.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			steps = append(steps, n)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// LatestCheckpoint returns the newest readable checkpoint in dir and its
// step, or "" and 0 when there is none (a missing dir is not an error).
// Unreadable files (a crash mid-write of an older layout, disk damage) are
// skipped with their errors collected in skipped.
func LatestCheckpoint(dir string) (path string, step int, skipped []error) {
	steps, err := checkpointSteps(dir)
	if err != nil {
		return "", 0, nil
	}
	for i := len(steps) - 1; i >= 0; i-- {
		p := CheckpointPath(dir, steps[i])
		f, err := safetensors.Open(p)
		if err == nil {
			ok := f.Metadata["format"] == CheckpointFormat
			f.Close()
			if ok {
				return p, steps[i], skipped
			}
			err = fmt.Errorf("%s: not an InstructBooth checkpoint", p)
		}
		skipped = append(skipped, err)
	}
	return "", 0, skipped
}

// LoadCheckpoint restores a checkpoint written by SaveCheckpoint into params
// (matched by Name; every param must be present with its shape) and opt
// (may be nil), unmarshals its state into state (may be nil) and returns
// its step. On error nothing has been changed.
func LoadCheckpoint(path string, params []*gpu.Tensor, opt *gpu.AdamW, state any) (int, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	meta := f.Metadata
	if meta["format"] != CheckpointFormat {
		return 0, fmt.Errorf("%s: not an InstructBooth checkpoint (format %q)", path, meta["format"])
	}
	step, err := strconv.Atoi(meta["step"])
	if err != nil || step < 0 {
		return 0, fmt.Errorf("%s: bad step %q", path, meta["step"])
	}
	vals := make([][]float32, len(params))
	for i, p := range params {
		v, info, err := f.Float32("param/" + p.Name)
		if err != nil {
			return 0, fmt.Errorf("%s: parameter %s: %w", path, p.Name, err)
		}
		if !sameShape(info.Shape, p.Shape()) {
			return 0, fmt.Errorf("%s: parameter %s has shape %v, the model has %v", path, p.Name, info.Shape, p.Shape())
		}
		vals[i] = v
	}
	if state != nil {
		if err := json.Unmarshal([]byte(meta["state"]), state); err != nil {
			return 0, fmt.Errorf("%s: state: %w", path, err)
		}
	}
	if opt != nil {
		raw, _, err := f.Raw("optimizer")
		if err != nil {
			return 0, fmt.Errorf("%s: optimizer state: %w", path, err)
		}
		if err := opt.LoadState(bytes.NewReader(raw)); err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
	}
	for i, p := range params {
		if err := p.Write(vals[i]); err != nil {
			return 0, fmt.Errorf("%s: parameter %s: %w", path, p.Name, err)
		}
	}
	return step, nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
