// Package imgproc turns decoded images (any image.Image) into the
// normalised float32 CHW tensors the vision models take, reproducing the
// reference preprocessing pixel for pixel: torchvision's Resize (shorter
// side) + CenterCrop + ToTensor + Normalize on PIL images, and
// transformers' CLIPImageProcessor. Resizing is Pillow's BICUBIC on 8-bit
// images, bit-exact (resample.go). Decoding files is not this package's
// business.
package imgproc

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
)

// RGB8 is an 8-bit RGB image (PIL mode "RGB"): row-major, 3 bytes per
// pixel.
type RGB8 struct {
	W, H int
	Pix  []uint8 // [H, W, 3]
}

// NewRGB8 returns a black w x h image.
func NewRGB8(w, h int) *RGB8 { return &RGB8{W: w, H: h, Pix: make([]uint8, w*h*3)} }

// ToRGB8 converts img like PIL's convert("RGB"): colour channels are kept
// as stored (not premultiplied) and alpha is dropped, not composited; gray
// is replicated; 16-bit channels keep their high byte.
func ToRGB8(img image.Image) *RGB8 {
	b := img.Bounds()
	m := NewRGB8(b.Dx(), b.Dy())
	i := 0
	switch s := img.(type) {
	case *image.NRGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := s.Pix[s.PixOffset(b.Min.X, y):]
			for x := 0; x < m.W; x++ {
				m.Pix[i], m.Pix[i+1], m.Pix[i+2] = row[4*x], row[4*x+1], row[4*x+2]
				i += 3
			}
		}
	default:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				m.Pix[i], m.Pix[i+1], m.Pix[i+2] = c.R, c.G, c.B
				i += 3
			}
		}
	}
	return m
}

// NRGBA returns m as an opaque image.NRGBA (for writing PNGs).
func (m *RGB8) NRGBA() *image.NRGBA {
	out := image.NewNRGBA(image.Rect(0, 0, m.W, m.H))
	for i := 0; i < m.W*m.H; i++ {
		copy(out.Pix[4*i:4*i+3], m.Pix[3*i:3*i+3])
		out.Pix[4*i+3] = 255
	}
	return out
}

// ShortSide returns the size torchvision's Resize(n) and transformers'
// shortest_edge resize give a w x h image: the shorter side becomes n,
// the longer int(n * long / short) (truncated, as Python's int()).
func ShortSide(w, h, n int) (ow, oh int) {
	if w <= h {
		return n, int(float64(n*h) / float64(w))
	}
	return int(float64(n*w) / float64(h)), n
}

// CropRounding chooses how a centre crop's offset is rounded.
type CropRounding int

const (
	// CropTorchvision is torchvision's CenterCrop: offset
	// int(round((in - out) / 2)) with Python's half-to-even round; an image
	// smaller than the crop is padded with zeros first, (out-in)//2 before.
	CropTorchvision CropRounding = iota
	// CropHF is transformers' center_crop: offset (in - out) // 2 (floor),
	// zero padding where the crop leaves the image.
	CropHF
)

// cropOffset is the source index of the crop's first row or column
// (negative when the crop is larger than the image).
func cropOffset(in, out int, r CropRounding) int {
	d := in - out
	switch {
	case r == CropHF:
		return int(math.Floor(float64(d) / 2))
	case d < 0:
		return -(-d / 2)
	}
	return int(math.RoundToEven(float64(d) / 2))
}

// Config is one preprocessing: resize the shorter side to Resize (0: no
// resize), centre-crop to CropW x CropH (0: no crop), scale to [0, 1] by
// 1/255 and normalise per channel: (x - Mean) / Std, all in float32 as
// torch does.
type Config struct {
	Resize       int
	CropW, CropH int
	Crop         CropRounding
	Mean, Std    [3]float32
}

// CLIP mean and std (openai CLIP, every CLIPImageProcessor, ImageReward).
var (
	CLIPMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	CLIPStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
	// ImageNetMean and ImageNetStd are torchvision's ImageNet statistics
	// (DINO's eval transform).
	ImageNetMean = [3]float32{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// CLIP is transformers' CLIPImageProcessor at size n (shortest_edge n,
// crop n x n, CLIP mean/std): 224 for CLIP ViT-B/L and PickScore's CLIP-H.
func CLIP(n int) Config {
	return Config{Resize: n, CropW: n, CropH: n, Crop: CropHF, Mean: CLIPMean, Std: CLIPStd}
}

// ImageReward is ImageReward's _transform(n): torchvision Resize(n,
// BICUBIC), CenterCrop(n), ToTensor, Normalize(CLIP mean/std); n is 224
// for ImageReward-v1.0.
func ImageReward(n int) Config {
	return Config{Resize: n, CropW: n, CropH: n, Crop: CropTorchvision, Mean: CLIPMean, Std: CLIPStd}
}

// ImageNet is torchvision's Resize(resize, BICUBIC), CenterCrop(crop),
// ToTensor, Normalize(ImageNet mean/std).
func ImageNet(resize, crop int) Config {
	return Config{Resize: resize, CropW: crop, CropH: crop, Crop: CropTorchvision, Mean: ImageNetMean, Std: ImageNetStd}
}

// DINO is DINO's evaluation transform for crop x crop inputs: the
// Resize(256)/CenterCrop(224) ratio scaled to crop (crop 224 gives
// ImageNet(256, 224)).
func DINO(crop int) Config { return ImageNet(crop*256/224, crop) }

// preprocessorConfig is the part of preprocessor_config.json read.
type preprocessorConfig struct {
	Type        string          `json:"image_processor_type"`
	DoResize    *bool           `json:"do_resize"`
	Size        json.RawMessage `json:"size"`
	DoCrop      *bool           `json:"do_center_crop"`
	CropSize    json.RawMessage `json:"crop_size"`
	DoRescale   *bool           `json:"do_rescale"`
	Rescale     *float64        `json:"rescale_factor"`
	DoNormalize *bool           `json:"do_normalize"`
	Mean        []float32       `json:"image_mean"`
	Std         []float32       `json:"image_std"`
	Resample    *int            `json:"resample"`
}

// ReadPreprocessorConfig reads a transformers CLIPImageProcessor
// preprocessor_config.json ("size": {"shortest_edge": n} or a number,
// "crop_size": {"height", "width"} or a number). Only what this package
// reproduces is accepted: bicubic resampling (resample 3), rescale 1/255;
// anything else is an error naming the file.
func ReadPreprocessorConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var p preprocessorConfig
	if err := json.Unmarshal(b, &p); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	c := Config{Crop: CropHF, Mean: CLIPMean, Std: CLIPStd}
	on := func(b *bool) bool { return b == nil || *b }
	if p.Resample != nil && *p.Resample != 3 {
		return c, fmt.Errorf("%s: resample %d is not supported (only 3, bicubic)", path, *p.Resample)
	}
	if p.Rescale != nil && math.Abs(*p.Rescale-1.0/255) > 1e-12 && on(p.DoRescale) {
		return c, fmt.Errorf("%s: rescale_factor %g is not supported (only 1/255)", path, *p.Rescale)
	}
	if p.DoRescale != nil && !*p.DoRescale {
		return c, fmt.Errorf("%s: do_rescale false is not supported", path)
	}
	if on(p.DoResize) {
		var n int
		var m map[string]int
		switch {
		case len(p.Size) == 0:
			n = 224
		case json.Unmarshal(p.Size, &n) == nil:
		case json.Unmarshal(p.Size, &m) == nil && m["shortest_edge"] > 0:
			n = m["shortest_edge"]
		default:
			return c, fmt.Errorf("%s: size %s is not supported (want a number or {\"shortest_edge\": n})", path, p.Size)
		}
		c.Resize = n
	}
	if on(p.DoCrop) {
		var n int
		var m map[string]int
		switch {
		case len(p.CropSize) == 0:
			c.CropW, c.CropH = 224, 224
		case json.Unmarshal(p.CropSize, &n) == nil:
			c.CropW, c.CropH = n, n
		case json.Unmarshal(p.CropSize, &m) == nil && m["height"] > 0 && m["width"] > 0:
			c.CropW, c.CropH = m["width"], m["height"]
		default:
			return c, fmt.Errorf("%s: crop_size %s is not supported", path, p.CropSize)
		}
	}
	if p.DoNormalize != nil && !*p.DoNormalize {
		c.Mean, c.Std = [3]float32{}, [3]float32{1, 1, 1}
	} else {
		if p.Mean != nil {
			if len(p.Mean) != 3 {
				return c, fmt.Errorf("%s: image_mean has %d values, want 3", path, len(p.Mean))
			}
			copy(c.Mean[:], p.Mean)
		}
		if p.Std != nil {
			if len(p.Std) != 3 {
				return c, fmt.Errorf("%s: image_std has %d values, want 3", path, len(p.Std))
			}
			copy(c.Std[:], p.Std)
		}
	}
	return c, c.Validate()
}

// Validate checks the sizes and the std.
func (c Config) Validate() error {
	if c.Resize < 0 || c.CropW < 0 || c.CropH < 0 || (c.CropW == 0) != (c.CropH == 0) {
		return fmt.Errorf("imgproc: bad sizes resize %d crop %dx%d", c.Resize, c.CropW, c.CropH)
	}
	for _, s := range c.Std {
		if s == 0 {
			return fmt.Errorf("imgproc: zero std")
		}
	}
	return nil
}

// OutSize is the output width and height for a w x h input.
func (c Config) OutSize(w, h int) (int, int) {
	if c.CropW > 0 {
		return c.CropW, c.CropH
	}
	if c.Resize > 0 {
		return ShortSide(w, h, c.Resize)
	}
	return w, h
}

// Pixels returns the resized and cropped 8-bit image (what the model
// sees, before scaling and normalisation).
func (c Config) Pixels(img image.Image) (*RGB8, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, fmt.Errorf("imgproc: empty image")
	}
	m := ToRGB8(img)
	if c.Resize > 0 {
		w, h := ShortSide(m.W, m.H, c.Resize)
		if w < 1 || h < 1 {
			return nil, fmt.Errorf("imgproc: a %dx%d image resizes to %dx%d", m.W, m.H, w, h)
		}
		m = m.ResizeBicubic(w, h)
	}
	if c.CropW > 0 && (c.CropW != m.W || c.CropH != m.H) {
		top, left := cropOffset(m.H, c.CropH, c.Crop), cropOffset(m.W, c.CropW, c.Crop)
		out := NewRGB8(c.CropW, c.CropH)
		for y := 0; y < c.CropH; y++ {
			sy := y + top
			if sy < 0 || sy >= m.H {
				continue
			}
			for x := 0; x < c.CropW; x++ {
				sx := x + left
				if sx < 0 || sx >= m.W {
					continue
				}
				copy(out.Pix[(y*c.CropW+x)*3:(y*c.CropW+x)*3+3], m.Pix[(sy*m.W+sx)*3:])
			}
		}
		m = out
	}
	return m, nil
}

// Normalize writes m as [3, H, W] float32 into dst (allocated when nil):
// ToTensor (v/255 in float32) then (x - Mean) / Std.
func (c Config) Normalize(m *RGB8, dst []float32) []float32 {
	n := m.W * m.H
	if dst == nil {
		dst = make([]float32, 3*n)
	}
	for ch := 0; ch < 3; ch++ {
		mean, std := c.Mean[ch], c.Std[ch]
		for i := 0; i < n; i++ {
			x := float32(m.Pix[3*i+ch]) / 255
			dst[ch*n+i] = (x - mean) / std
		}
	}
	return dst
}

// Apply preprocesses one image to [3, H, W] (H, W from OutSize).
func (c Config) Apply(img image.Image) ([]float32, error) {
	m, err := c.Pixels(img)
	if err != nil {
		return nil, err
	}
	return c.Normalize(m, nil), nil
}

// Batch preprocesses images into one [N, 3, H, W] tensor's data. Without a
// crop every image must come out the same size.
func (c Config) Batch(imgs []image.Image) (data []float32, h, w int, err error) {
	for i, img := range imgs {
		m, err := c.Pixels(img)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("image %d: %w", i, err)
		}
		if i == 0 {
			h, w = m.H, m.W
			data = make([]float32, 0, len(imgs)*3*h*w)
		} else if m.H != h || m.W != w {
			return nil, 0, 0, fmt.Errorf("image %d: preprocessed to %dx%d, image 0 to %dx%d", i, m.W, m.H, w, h)
		}
		data = append(data, c.Normalize(m, nil)...)
	}
	return data, h, w, nil
}
