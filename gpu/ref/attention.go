package ref

import "math"

// attnProbs returns the attention probabilities of slice bh: p[i][j] =
// softmax_j(scale * q_i . k_j), masked (0) where j > i when causal.
func attnProbs(q, k *T, bh int, scale float64, causal bool) [][]float64 {
	lq, lk, d := q.Shape[2], k.Shape[2], q.Shape[3]
	p := make([][]float64, lq)
	for i := range lq {
		p[i] = make([]float64, lk)
		qi := q.Data[(bh*lq+i)*d : (bh*lq+i+1)*d]
		m := math.Inf(-1)
		for j := range lk {
			if causal && j > i {
				p[i][j] = math.Inf(-1)
				continue
			}
			kj := k.Data[(bh*lk+j)*d : (bh*lk+j+1)*d]
			s := 0.0
			for t := range d {
				s += qi[t] * kj[t]
			}
			p[i][j] = s * scale
			m = math.Max(m, p[i][j])
		}
		sum := 0.0
		for j := range lk {
			p[i][j] = math.Exp(p[i][j] - m)
			sum += p[i][j]
		}
		for j := range lk {
			p[i][j] /= sum
		}
	}
	return p
}

// Attention is scaled dot-product attention: q [B, H, Lq, D], k and v
// [B, H, Lk, D], output [B, H, Lq, D]; when causal, key j > query i is
// masked.
func Attention(q, k, v *T, scale float64, causal bool) *T {
	b, h, lq, d := q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3]
	lk := k.Shape[2]
	out := New(b, h, lq, d)
	for bh := range b * h {
		p := attnProbs(q, k, bh, scale, causal)
		for i := range lq {
			for j := range lk {
				for t := range d {
					out.Data[(bh*lq+i)*d+t] += p[i][j] * v.Data[(bh*lk+j)*d+t]
				}
			}
		}
	}
	return out
}

// AttentionBackward returns dq, dk, dv given g = dL/dout.
func AttentionBackward(q, k, v, g *T, scale float64, causal bool) (dq, dk, dv *T) {
	b, h, lq, d := q.Shape[0], q.Shape[1], q.Shape[2], q.Shape[3]
	lk := k.Shape[2]
	dq, dk, dv = New(q.Shape...), New(k.Shape...), New(v.Shape...)
	for bh := range b * h {
		p := attnProbs(q, k, bh, scale, causal)
		for i := range lq {
			gi := g.Data[(bh*lq+i)*d : (bh*lq+i+1)*d]
			// dp[j] = g_i . v_j; ds[j] = p[j] * (dp[j] - sum_j p[j] dp[j]).
			dp := make([]float64, lk)
			pdp := 0.0
			for j := range lk {
				for t := range d {
					dp[j] += gi[t] * v.Data[(bh*lk+j)*d+t]
				}
				pdp += p[i][j] * dp[j]
			}
			for j := range lk {
				ds := p[i][j] * (dp[j] - pdp) * scale
				for t := range d {
					dv.Data[(bh*lk+j)*d+t] += p[i][j] * gi[t]
					dq.Data[(bh*lq+i)*d+t] += ds * k.Data[(bh*lk+j)*d+t]
					dk.Data[(bh*lk+j)*d+t] += ds * q.Data[(bh*lq+i)*d+t]
				}
			}
		}
	}
	return
}
