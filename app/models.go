package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/store"
)

// ErrNoBaseModel is returned when a run needs a base model and none is set.
var ErrNoBaseModel = errors.New("no base model: add a Stable Diffusion 1.x checkpoint in Settings")

// Models keeps the most recently used base model loaded on the GPU, so that
// consecutive jobs on the same model do not load it again. Weights are kept
// as binary16 (sd.LoadOptions.F16Weights): half the memory, f32 math. Its
// methods are called on the GPU goroutine (jobs, Runner.WithGPU).
type Models struct {
	e  *gpu.Engine
	db *store.DB

	mu   sync.Mutex
	base store.BaseModel
	pl   *sd.Pipeline
}

// NewModels returns an empty cache on e that finds base models in db.
func NewModels(e *gpu.Engine, db *store.DB) *Models { return &Models{e: e, db: db} }

// Base returns the loaded pipeline of the base model with the given id,
// loading it (and unloading another) when needed. The pipeline stays owned
// by the cache: do not Release it; detach any adapter you attach.
func (m *Models) Base(id string) (*sd.Pipeline, store.BaseModel, error) {
	if id == "" {
		return nil, store.BaseModel{}, ErrNoBaseModel
	}
	bm, err := m.db.BaseModel(id)
	if err != nil {
		return nil, store.BaseModel{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pl != nil && m.base.ID == bm.ID && m.base.Path == bm.Path {
		return m.pl, bm, nil
	}
	m.releaseLocked()
	if _, err := os.Stat(bm.Path); err != nil {
		return nil, bm, fmt.Errorf("base model %q: %w (fix its location in Settings)", bm.Name, err)
	}
	pl, err := sd.Load(m.e, bm.Path, sd.LoadOptions{F16Weights: true})
	if err != nil {
		return nil, bm, fmt.Errorf("base model %q: %w", bm.Name, err)
	}
	m.base, m.pl = bm, pl
	return pl, bm, nil
}

// Trim gives GPU memory back when the engine holds more than budget bytes
// (0: no limit): first the pool's cached buffers, then the cached model, so
// that the memory held between jobs stays within the user's budget.
func (m *Models) Trim(budget uint64) {
	if budget == 0 {
		return
	}
	if m.e.MemStats().Device > budget {
		m.e.Trim() // cached free buffers first
	}
	if m.e.MemStats().Device > budget {
		m.Release()
		m.e.Trim()
	}
}

// Release unloads the cached model.
func (m *Models) Release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked()
}

func (m *Models) releaseLocked() {
	if m.pl != nil {
		m.pl.Release()
	}
	m.pl, m.base = nil, store.BaseModel{}
}

// Targets are the models of pl that LoRA files adapt.
func Targets(pl *sd.Pipeline) lora.Targets {
	var t lora.Targets
	if pl.UNet != nil {
		t.UNet = pl.UNet.W
	}
	if pl.Text != nil {
		t.TextEncoder = pl.Text.W.Root()
	}
	return t
}

// LoadCheckpointLoRA reads the LoRA tensors of a store checkpoint (a
// safetensors file in any layout model/lora reads: kohya, diffusers, PEFT)
// against pl. The adapters are uploaded but not attached; release them
// with Release.
func LoadCheckpointLoRA(db *store.DB, checkpointID string, pl *sd.Pipeline) (*lora.Loaded, error) {
	c, err := db.Checkpoint(checkpointID)
	if err != nil {
		return nil, err
	}
	if c.Kind != store.CheckpointLoRA {
		return nil, fmt.Errorf("checkpoint %s is a full fine-tune (%s), not a LoRA", checkpointID, c.Path)
	}
	data, err := db.CheckpointTensors(checkpointID)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("checkpoint %s (step %d)", checkpointID, c.Step)
	f, err := safetensors.Parse(bytes.NewReader(data), int64(len(data)), name)
	if err != nil {
		return nil, err
	}
	return lora.Read(f, Targets(pl))
}

// NativeSize is the image size a base model was trained at: the U-Net's
// sample_size times the VAE's factor for a diffusers folder whose
// unet/config.json says it (the factor is the patch of a pixel codec, or
// 2^(levels-1) of an AutoencoderKL: 8 for SD 1.x), else 512 (SD 1.x).
func NativeSize(path string) int {
	b, err := os.ReadFile(filepath.Join(path, "unet", "config.json"))
	if err != nil {
		return 512
	}
	var cfg struct {
		SampleSize int `json:"sample_size"`
	}
	if json.Unmarshal(b, &cfg) != nil || cfg.SampleSize <= 0 {
		return 512
	}
	return cfg.SampleSize * vaeFactor(path)
}

// vaeFactor is the image-to-latent ratio the folder's vae/config.json
// declares: a pixel codec's patch_size, else 2^(len(block_out_channels)-1);
// 8 when it says neither.
func vaeFactor(path string) int {
	b, err := os.ReadFile(filepath.Join(path, "vae", "config.json"))
	if err != nil {
		return 8
	}
	var cfg struct {
		Class  string `json:"_class_name"`
		Patch  int    `json:"patch_size"`
		Blocks []int  `json:"block_out_channels"`
	}
	switch {
	case json.Unmarshal(b, &cfg) != nil:
		return 8
	case cfg.Class == sd.PixelCodecClass && cfg.Patch > 0:
		return cfg.Patch
	case len(cfg.Blocks) > 0 && len(cfg.Blocks) <= 6:
		return 1 << (len(cfg.Blocks) - 1)
	}
	return 8
}
