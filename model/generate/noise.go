package generate

import "math"

// Seeded Gaussian noise that is the same bit for bit on every machine.
//
// The noise of a generation is computed on the CPU and uploaded, so the GPU
// cannot change it. The definition, which any implementation can reproduce:
//
//   - Values are numbered i = 0, 1, 2, ... within a stream s (a uint64). The
//     pair (2j, 2j+1) comes from one Philox4x32-10 block (Salmon et al.,
//     "Parallel random numbers: as easy as 1, 2, 3", SC 2011; Random123's
//     philox4x32 with 10 rounds) with key (lo32(seed), hi32(seed)) and
//     counter (lo32(j), hi32(j), lo32(s), hi32(s)), giving words r0..r3.
//   - Two uniforms with 53 bits each: u1 = (((r0<<32 | r1) >> 11) + 1) 2^-53
//     in (0, 1], u2 = ((r2<<32 | r3) >> 11) 2^-53 in [0, 1).
//   - Box-Muller: rho = sqrt(-2 ln u1); value 2j = rho cos(2 pi u2), value
//     2j+1 = rho sin(2 pi u2), computed in float64 and rounded to float32.
//
// ln, cos and sin are evaluated here by fixed polynomial series using only
// IEEE-754 additions, multiplications and divisions, each rounded on its
// own (no fused multiply-add), and sqrt is IEEE's correctly rounded square
// root, so the float64 results, and the float32 values, do not depend on
// the CPU or on the Go version (the math package's Log, Sin and Cos use
// assembly on some architectures and may differ in the last bit).
//
// Streams used by Generate for an image with seed S: stream 0 is the
// initial latent x_T; stream 1+k is the noise z of sampling step k
// (stochastic samplers only). Latents are filled in NCHW order.

// Philox4x32-10 constants (Random123).
const (
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
	philoxW0 = 0x9E3779B9
	philoxW1 = 0xBB67AE85
)

// Philox4x32 is the Philox4x32-10 block function: it maps a 128-bit counter
// and a 64-bit key to 128 random bits.
func Philox4x32(ctr [4]uint32, key [2]uint32) [4]uint32 {
	c0, c1, c2, c3 := ctr[0], ctr[1], ctr[2], ctr[3]
	k0, k1 := key[0], key[1]
	for r := 0; r < 10; r++ {
		if r > 0 {
			k0 += philoxW0
			k1 += philoxW1
		}
		p0 := uint64(philoxM0) * uint64(c0)
		p1 := uint64(philoxM1) * uint64(c2)
		hi0, lo0 := uint32(p0>>32), uint32(p0)
		hi1, lo1 := uint32(p1>>32), uint32(p1)
		c0, c1, c2, c3 = hi1^c1^k0, lo1, hi0^c3^k1, lo0
	}
	return [4]uint32{c0, c1, c2, c3}
}

// Noise fills out with standard normal values 0..len(out)-1 of stream
// stream for seed, as defined above.
func Noise(seed, stream uint64, out []float32) {
	key := [2]uint32{uint32(seed), uint32(seed >> 32)}
	for j := 0; 2*j < len(out); j++ {
		r := Philox4x32([4]uint32{uint32(j), uint32(uint64(j) >> 32), uint32(stream), uint32(stream >> 32)}, key)
		a := (uint64(r[0])<<32 | uint64(r[1])) >> 11
		b := (uint64(r[2])<<32 | uint64(r[3])) >> 11
		u1 := float64(a+1) * 0x1p-53 // (0, 1]
		u2 := float64(b) * 0x1p-53   // [0, 1)
		rho := math.Sqrt(-2 * plog(u1))
		s, c := sincos2pi(u2)
		out[2*j] = float32(float64(rho * c))
		if 2*j+1 < len(out) {
			out[2*j+1] = float32(float64(rho * s))
		}
	}
}

// ln 2 split so that e*ln2Hi is exact for |e| < 2^11.
const (
	ln2Hi = 6.93147180369123816490e-01
	ln2Lo = 1.90821492927058770002e-10
)

// plog is ln x for x in (0, 1] (any positive normal x works) from
// ln(m) = 2 atanh(f/(2+f)), f = m - 1, with m in [sqrt(1/2), sqrt(2)).
// Every operation is rounded on its own (float64(...) forbids fusion).
func plog(x float64) float64 {
	m, e := math.Frexp(x) // exact: x = m 2^e, m in [0.5, 1)
	if m < math.Sqrt2/2 {
		m *= 2 // exact
		e--
	}
	f := m - 1 // exact (Sterbenz)
	s := f / (2 + f)
	z := float64(s * s)
	// atanh(s)/s = sum z^k/(2k+1); |s| < 0.1716, so 12 terms reach 1e-19.
	p := 1.0 / 23
	for k := 10; k >= 0; k-- {
		p = float64(p*z) + 1/float64(2*k+1)
	}
	fe := float64(e)
	return float64(fe*ln2Hi) + (float64(2*float64(s*p)) + float64(fe*ln2Lo))
}

// sincos2pi returns sin(2 pi u) and cos(2 pi u) for u in [0, 1). The turn
// is split into octants exactly (u is a multiple of 2^-53), and Taylor
// series are evaluated on an angle of at most pi/4.
func sincos2pi(u float64) (sin, cos float64) {
	v := u * 8 // exact
	q := int(v)
	r := v - float64(q) // exact, in [0, 1)
	if q&1 == 1 {
		r = 1 - r // exact; the angle is measured back from the octant's end
	}
	a := float64(r * (math.Pi / 4))
	sa, ca := sinTaylor(a), cosTaylor(a)
	switch q {
	case 0:
		return sa, ca
	case 1:
		return ca, sa
	case 2:
		return ca, -sa
	case 3:
		return sa, -ca
	case 4:
		return -sa, -ca
	case 5:
		return -ca, -sa
	case 6:
		return -ca, sa
	default:
		return -sa, ca
	}
}

// sinTaylor is sin a for 0 <= a <= pi/4 (terms to a^19/19!).
func sinTaylor(a float64) float64 {
	z := float64(a * a)
	p := -1.0 / 121645100408832000 // -1/19!
	for _, c := range [...]float64{1.0 / 355687428096000, -1.0 / 1307674368000, 1.0 / 6227020800, -1.0 / 39916800, 1.0 / 362880, -1.0 / 5040, 1.0 / 120, -1.0 / 6, 1} {
		p = float64(p*z) + c
	}
	return float64(a * p)
}

// cosTaylor is cos a for 0 <= a <= pi/4 (terms to a^20/20!).
func cosTaylor(a float64) float64 {
	z := float64(a * a)
	p := 1.0 / 2432902008176640000 // 1/20!
	for _, c := range [...]float64{-1.0 / 6402373705728000, 1.0 / 20922789888000, -1.0 / 87178291200, 1.0 / 479001600, -1.0 / 3628800, 1.0 / 40320, -1.0 / 720, 1.0 / 24, -1.0 / 2, 1} {
		p = float64(p*z) + c
	}
	return p
}
