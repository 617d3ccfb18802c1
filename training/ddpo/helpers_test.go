package ddpo

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sd"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

var (
	tinyOnce sync.Mutex
	tinyPipe *sd.Pipeline
)

// tiny returns the sd-tiny fixture model (f32 weights), loaded once per
// test binary. Tests must leave it as they found it (no adapters).
func tiny(t testing.TB) (*gpu.Engine, generate.Components) {
	t.Helper()
	e := testenv.Engine(t)
	tinyOnce.Lock()
	defer tinyOnce.Unlock()
	if tinyPipe == nil {
		p, err := sd.Load(e, filepath.Join(testenv.Fixtures(t), "sd-tiny", "diffusers"), sd.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tinyPipe = p
	}
	p := tinyPipe
	return e, generate.Components{Tokenizer: p.Tokenizer, Text: p.Text, UNet: p.UNet, VAE: p.VAE, Schedule: p.Schedule, Name: "sd-tiny"}
}
