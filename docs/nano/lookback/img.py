# Toy: aligned multi-char reading from an image-token prefix (one char per token, one row).
import sys, math, random, time, torch, torch.nn as nn
from transformers import LlamaConfig, LlamaForCausalLM
torch.set_num_threads(1)
args = dict(a.split('=') for a in sys.argv[1:])
lr = float(args.get('lr', 2e-3)); steps = int(args.get('steps', 200)); n = int(args.get('n', 7))
cm = float(args.get('cm', 1.0)); sig = float(args.get('sig', 1.0)); noise = float(args.get('noise', 0.3))
prompt = int(args.get('prompt', 265)); ntok = int(args.get('ntok', 200)); seed = int(args.get('seed', 0))
torch.manual_seed(seed); random.seed(seed)
ALNUM = [chr(c) for c in range(65, 91)] + [chr(c) for c in range(97, 123)] + [chr(c) for c in range(48, 58)]
def enc(s): return [3 + ord(c) for c in s]
rope = float(args.get('rope', 1)); theta = float(args.get('theta', 10000))
cfg = LlamaConfig(rope_theta=theta, rope_scaling=({'rope_type': 'linear', 'factor': rope, 'rope_theta': theta} if rope != 1 else None), vocab_size=384, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=False)
model = LlamaForCausalLM(cfg); emb = model.get_input_embeddings()
D = 256
cls = torch.randn(62, D); paper = torch.randn(4, D); ink = torch.randn(4, D)
proj = nn.Sequential(nn.Linear(D, D), nn.LayerNorm(D))
FILL = enc(("Please detect all texts and provide their bounding box coordinate. " * 6)[:prompt])
params = list(model.parameters()) + list(proj.parameters())
opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.02)
row0 = int(args.get("row0", 75))
t0 = time.time()
for step in range(1, steps + 1):
    for gp in opt.param_groups: gp['lr'] = lr * min(1.0, step / 10)
    seqs, tp, tg = [], [], []
    for b in range(16):
        k = random.randint(1, n); s = ''.join(random.choice(ALNUM) for _ in range(k))
        pi, ii = random.randrange(4), random.randrange(4)
        f = cm * paper[pi].repeat(ntok, 1) + noise * torch.randn(ntok, D)
        for j, c in enumerate(s):
            f[row0 + 1 + j] += sig * cls[ALNUM.index(c)] + cm * 0.5 * ink[ii]
        img = proj(f)
        pre = emb(torch.tensor([1])); mid = emb(torch.tensor(FILL + enc(" Assistant: <p>")))
        tgt = enc(s + "</p>"); tin = emb(torch.tensor(tgt[:-1]))
        e = torch.cat([pre, img, mid, tin]); n0 = 1 + ntok + len(FILL) + len(enc(" Assistant: <p>"))
        seqs.append(e); tp.append(list(range(n0 - 1, n0 - 1 + len(tgt)))); tg.append(tgt)
    L = max(x.shape[0] for x in seqs)
    x = torch.stack([torch.cat([s_, s_.new_zeros(L - s_.shape[0], D)]) for s_ in seqs])
    logits = model.lm_head(model.model(inputs_embeds=x).last_hidden_state)
    rows = torch.tensor([b for b in range(16) for _ in tp[b]]); cols = torch.tensor([c for t in tp for c in t])
    y = torch.tensor([t for tt in tg for t in tt]); lo = logits[rows, cols]
    loss = nn.functional.cross_entropy(lo, y)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    if step % 10 == 0:
        acc = (lo.argmax(-1) == y).float().mean().item()
        print(f"step {step} loss {loss.item():.3f} acc {acc:.2f} t {time.time()-t0:.0f}s", flush=True)
