package lora

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// Loaded is a LoRA file read against its target models.
type Loaded struct {
	Set
	Format   Format
	Metadata map[string]string // the file's safetensors metadata (may be nil)
	// Skipped lists the text-encoder modules the file adapts that were not
	// loaded because Targets.TextEncoder was nil (kohya names as in the
	// file, "lora_te_..."; other layouts by module path), sorted.
	Skipped []string
}

// Load reads the LoRA file at path against t. The adapters are uploaded
// frozen (SetRequiresGrad to train them) and not attached: call Attach.
// Every tensor of the file must be understood and land on a layer of the
// right shape; otherwise the error names the file and the key.
func Load(path string, t Targets) (*Loaded, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, t)
}

type component int

const (
	unetComp component = iota
	teComp
)

func (c component) String() string {
	if c == teComp {
		return "text encoder"
	}
	return "U-Net"
}

type part int

const (
	downPart part = iota
	upPart
	alphaPart
)

// parsed is what one key of a LoRA file says.
type parsed struct {
	comp   component
	name   string // kohya underscore name, or module path for other layouts
	part   part
	format Format // "" for alpha keys outside kohya files (any layout)
}

var (
	// diffusers' attention-processor layout (diffusers < 0.21):
	// <attn>.processor.to_q_lora.down.weight (U-Net),
	// <attn>.to_q_lora.down.weight (text encoder).
	procKey = regexp.MustCompile(`^(.+?)\.(?:processor\.)?(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$`)

	diffusersSuffixes = []struct {
		s string
		p part
		f Format
	}{
		{".lora.down.weight", downPart, Diffusers},
		{".lora.up.weight", upPart, Diffusers},
		{".lora_layer.down.weight", downPart, Diffusers},
		{".lora_layer.up.weight", upPart, Diffusers},
		{".lora_linear_layer.down.weight", downPart, Diffusers},
		{".lora_linear_layer.up.weight", upPart, Diffusers},
		{".lora_A.weight", downPart, PEFT},
		{".lora_B.weight", upPart, PEFT},
		{".alpha", alphaPart, ""},
	}
)

// parseKey is the one conversion table from file keys to (model, module,
// tensor).
func parseKey(key string) (parsed, error) {
	if strings.HasPrefix(key, "lora_te1_") || strings.HasPrefix(key, "lora_te2_") || strings.HasPrefix(key, "text_encoder_2.") {
		return parsed{}, fmt.Errorf("key %q is for a second text encoder: looks like an SDXL LoRA, which is not supported", key)
	}
	for _, k := range []struct {
		prefix string
		comp   component
	}{{"lora_unet_", unetComp}, {"lora_te_", teComp}} {
		rest, ok := strings.CutPrefix(key, k.prefix)
		if !ok {
			continue
		}
		name, suffix, _ := strings.Cut(rest, ".")
		p := parsed{comp: k.comp, name: name, format: Kohya}
		switch suffix {
		case "lora_down.weight":
			p.part = downPart
		case "lora_up.weight":
			p.part = upPart
		case "alpha":
			p.part = alphaPart
		default:
			return parsed{}, fmt.Errorf("key %q: tensor kind %q is not plain LoRA (LyCORIS LoHa/LoKr/Tucker, DoRA and weight diffs are not supported)", key, suffix)
		}
		return p, nil
	}
	comp, rest := unetComp, key
	if r, ok := strings.CutPrefix(key, "unet."); ok {
		rest = r
	} else if r, ok := strings.CutPrefix(key, "text_encoder."); ok {
		comp, rest = teComp, r
	}
	if m := procKey.FindStringSubmatch(rest); m != nil {
		proj := map[string]string{"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}
		if comp == teComp {
			proj = map[string]string{"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}
		}
		p := parsed{comp: comp, name: m[1] + "." + proj[m[2]], part: downPart, format: Diffusers}
		if m[3] == "up" {
			p.part = upPart
		}
		return p, nil
	}
	for _, s := range diffusersSuffixes {
		if path, ok := strings.CutSuffix(rest, s.s); ok && path != "" {
			return parsed{comp: comp, name: path, part: s.p, format: s.f}, nil
		}
	}
	return parsed{}, fmt.Errorf("key %q is not a LoRA tensor of a known layout (kohya lora_unet_*.lora_down.weight, diffusers unet.*.lora.down.weight, PEFT unet.*.lora_A.weight)", key)
}

// group is the file keys of one adapted module.
type group struct {
	comp            component
	path            string
	down, up, alpha string
}

// Read loads the LoRA adapters of an open safetensors file; see Load.
func Read(f *safetensors.File, t Targets) (*Loaded, error) {
	if t.UNet == nil {
		return nil, fmt.Errorf("%s: lora: no U-Net to load against", f.Path)
	}
	idx := [2]*modules{unetComp: indexModules(t.UNet)}
	if t.TextEncoder != nil {
		idx[teComp] = indexModules(t.TextEncoder)
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("%s: lora: %s", f.Path, fmt.Sprintf(format, args...))
	}
	out := &Loaded{Metadata: f.Metadata}
	groups := map[string]*group{}
	skipped := map[string]bool{}
	for _, key := range f.Names() {
		p, err := parseKey(key)
		if err != nil {
			return nil, errf("%v", err)
		}
		if p.format != "" {
			if out.Format != "" && out.Format != p.format {
				return nil, errf("key %q is in the %s layout but earlier keys are %s: the file mixes layouts", key, p.format, out.Format)
			}
			out.Format = p.format
		}
		ix := idx[p.comp]
		if ix == nil {
			if p.format == Kohya {
				skipped["lora_te_"+p.name] = true
			} else {
				skipped[p.name] = true
			}
			continue
		}
		path := p.name
		if p.format == Kohya {
			var ok bool
			path, ok = ix.under[p.name]
			switch {
			case !ok:
				return nil, errf("key %q: the %s has no linear or conv layer whose name with . -> _ is %q%s", key, p.comp, p.name, ix.hint(p.name))
			case path == "":
				return nil, errf("key %q: %q names more than one layer of the %s", key, p.name, p.comp)
			}
		} else if _, ok := ix.shapes[path]; !ok {
			return nil, errf("key %q: the %s has no linear or conv layer %q%s", key, p.comp, path, ix.hint(path))
		}
		gk := p.comp.String() + ":" + path
		g := groups[gk]
		if g == nil {
			g = &group{comp: p.comp, path: path}
			groups[gk] = g
		}
		slot := [...]*string{downPart: &g.down, upPart: &g.up, alphaPart: &g.alpha}[p.part]
		if *slot != "" {
			return nil, errf("keys %q and %q are the same tensor of layer %q", *slot, key, path)
		}
		*slot = key
	}
	for k := range skipped {
		out.Skipped = append(out.Skipped, k)
	}
	sort.Strings(out.Skipped)
	if len(groups) == 0 && len(skipped) == 0 {
		return nil, errf("no LoRA tensors in the file")
	}
	gks := make([]string, 0, len(groups))
	for k := range groups {
		gks = append(gks, k)
	}
	sort.Strings(gks)
	out.UNet, out.TextEncoder = nn.Adapters{}, nn.Adapters{}
	for _, gk := range gks {
		g := groups[gk]
		a, err := buildAdapter(f, g, idx[g.comp].shapes[g.path], t.UNet.E)
		if err != nil {
			out.Release()
			return nil, errf("%v", err)
		}
		if g.comp == teComp {
			out.TextEncoder[g.path] = a
		} else {
			out.UNet[g.path] = a
		}
	}
	if len(out.TextEncoder) == 0 {
		out.TextEncoder = nil
	}
	return out, nil
}

// hint explains why name (a path or kohya name) is not an adaptable layer.
func (ix *modules) hint(name string) string {
	if s, ok := ix.other[name]; ok {
		return fmt.Sprintf(" (it is a norm or embedding with weight %v, which LoRA does not adapt)", s)
	}
	for _, p := range []string{"input_blocks", "middle_block", "output_blocks"} {
		if strings.HasPrefix(name, p) {
			return " (CompVis/LDM module names are not supported; SD 1.x LoRAs name diffusers modules)"
		}
	}
	return ""
}

// buildAdapter reads and validates one module's tensors against the layer's
// weight shape ws and uploads them: [rank, in] / [out, rank] on a linear
// layer, [rank, Cin, KH, KW] / [Cout, rank, 1, 1] on a conv layer (a 2-D
// pair is accepted on a 1x1 conv and a 1x1 4-D pair on a linear layer).
func buildAdapter(f *safetensors.File, g *group, ws []int, e *gpu.Engine) (*nn.LoRA, error) {
	if g.down == "" || g.up == "" {
		have, miss := g.down, "up"
		if have == "" {
			have, miss = g.up, "down"
		}
		if have == "" {
			return nil, fmt.Errorf("key %q: alpha without down and up tensors for layer %q", g.alpha, g.path)
		}
		return nil, fmt.Errorf("key %q has no matching %s tensor", have, miss)
	}
	dv, di, err := f.Float32(g.down)
	if err != nil {
		return nil, err
	}
	uv, ui, err := f.Float32(g.up)
	if err != nil {
		return nil, err
	}
	ds, us := di.Shape, ui.Shape
	if len(ds) < 2 || ds[0] < 1 {
		return nil, fmt.Errorf("key %q: down tensor of shape %v", g.down, ds)
	}
	rank := ds[0]
	conv := len(ws) == 4
	var wantD, wantU []int
	if conv {
		wantD, wantU = []int{rank, ws[1], ws[2], ws[3]}, []int{ws[0], rank, 1, 1}
	} else {
		wantD, wantU = []int{rank, ws[1]}, []int{ws[0], rank}
	}
	if !matches(ds, wantD) {
		return nil, fmt.Errorf("key %q has shape %v; layer %q (weight %v) needs %v", g.down, ds, g.path, ws, wantD)
	}
	if !matches(us, wantU) {
		return nil, fmt.Errorf("key %q has shape %v; layer %q (weight %v) with rank %d needs %v", g.up, us, g.path, ws, rank, wantU)
	}
	scale := float32(1)
	if g.alpha != "" {
		av, ai, err := f.Float32(g.alpha)
		if err != nil {
			return nil, err
		}
		if len(av) != 1 {
			return nil, fmt.Errorf("key %q: alpha of shape %v, want a scalar", g.alpha, ai.Shape)
		}
		scale = av[0] / float32(rank)
	}
	down, err := e.Upload(gpu.Weights, dv, wantD...)
	if err != nil {
		return nil, fmt.Errorf("uploading %q: %w", g.down, err)
	}
	up, err := e.Upload(gpu.Weights, uv, wantU...)
	if err != nil {
		down.Release()
		return nil, fmt.Errorf("uploading %q: %w", g.up, err)
	}
	down.Name, up.Name = g.path+".lora.down.weight", g.path+".lora.up.weight"
	return &nn.LoRA{Down: down, Up: up, Scale: scale}, nil
}

// matches reports whether shape equals want, allowing trailing 1x1 kernel
// dimensions to be present or absent (want [a, b] against [a, b, 1, 1] and
// the reverse).
func matches(shape, want []int) bool {
	trim := func(s []int) []int {
		if len(s) == 4 && s[2] == 1 && s[3] == 1 {
			return s[:2]
		}
		return s
	}
	s, w := trim(shape), trim(want)
	if len(s) != len(w) {
		return false
	}
	for i := range s {
		if s[i] != w[i] {
			return false
		}
	}
	return true
}
