package reward

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
)

// JPEG is DDPO's compressibility reward: the size of the image encoded as
// JPEG at quality 95, in kB (1000 bytes), negated unless Incompressible.
// (DDPO encodes with PIL/libjpeg. Go's encoder uses the same IJG quality
// scaling, standard Huffman tables and 4:2:0 chroma subsampling, but its
// DCT and colour conversion round differently, so sizes agree with PIL's
// closely, not to the byte.)
type JPEG struct {
	Incompressible bool
}

// Quality is the JPEG quality DDPO measures at.
const Quality = 95

func (j JPEG) Name() string {
	if j.Incompressible {
		return "jpeg-incompressibility"
	}
	return "jpeg"
}

// Score returns ∓ size in kB per image.
func (j JPEG) Score(ctx context.Context, images []*image.NRGBA, prompts []string) ([]float64, error) {
	if err := check(j.Name(), images, prompts); err != nil {
		return nil, err
	}
	out := make([]float64, len(images))
	var buf bytes.Buffer
	for i, im := range images {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		kb, err := JPEGSize(&buf, im)
		if err != nil {
			return nil, err
		}
		if !j.Incompressible {
			kb = -kb
		}
		out[i] = kb
	}
	return out, nil
}

// JPEGSize encodes im at Quality into buf (reset first) and returns the
// size in kB (bytes / 1000).
func JPEGSize(buf *bytes.Buffer, im image.Image) (float64, error) {
	buf.Reset()
	if err := jpeg.Encode(buf, im, &jpeg.Options{Quality: Quality}); err != nil {
		return 0, err
	}
	return float64(buf.Len()) / 1000, nil
}

// Brightness rewards bright images: the mean of the R, G and B values over
// all pixels, divided by 255 (0 black, 1 white). Alpha is ignored.
type Brightness struct{}

func (Brightness) Name() string { return "brightness" }

// Score returns each image's mean brightness.
func (b Brightness) Score(ctx context.Context, images []*image.NRGBA, prompts []string) ([]float64, error) {
	if err := check(b.Name(), images, prompts); err != nil {
		return nil, err
	}
	out := make([]float64, len(images))
	for i, im := range images {
		out[i] = MeanBrightness(im)
	}
	return out, ctx.Err()
}

// MeanBrightness is the mean of R, G and B over im's pixels, in [0, 1].
func MeanBrightness(im *image.NRGBA) float64 {
	r := im.Rect
	var sum uint64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := im.Pix[im.PixOffset(r.Min.X, y):]
		for x := 0; x < r.Dx(); x++ {
			p := row[4*x:]
			sum += uint64(p[0]) + uint64(p[1]) + uint64(p[2])
		}
	}
	return float64(sum) / (3 * 255 * float64(r.Dx()*r.Dy()))
}
