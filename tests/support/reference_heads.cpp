#include "reference_heads.h"

#include <cmath>

namespace facetrain::testing::reference {

namespace F = torch::nn::functional;
using torch::indexing::Slice;

namespace {
// F.normalize(t, dim)
torch::Tensor normalize(const torch::Tensor& t, int64_t dim) {
  return F::normalize(t, F::NormalizeFuncOptions().p(2).dim(dim));
}
// l2_norm of CurricularFace / AdaFace: torch.div(input, torch.norm(input, 2, axis, True)), no eps
torch::Tensor l2_norm(const torch::Tensor& t, int64_t axis) { return t / t.norm(2, axis, true); }
}  // namespace

torch::Tensor softmax(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return F::linear(x, w, b);
}

torch::Tensor svx_fc(const torch::Tensor& x_raw, const torch::Tensor& w, const torch::Tensor& label,
                     const std::string& fc_type, double margin, double t, double scale, bool easy_margin,
                     bool adaptive) {
  auto x = normalize(x_raw, 1);  // "note both x and w are already l2 normalized"
  auto weight = w.t();           // FC stores [embedding_size, num_class]
  const double cos_m = std::cos(margin), sin_m = std::sin(margin);

  auto kernel_norm = normalize(weight, 0);
  auto cos_theta = torch::mm(x, kernel_norm);
  cos_theta = cos_theta.clamp(-1, 1);
  auto batch_size = label.size(0);
  auto gt = cos_theta.index({torch::arange(batch_size), label}).view({-1, 1});
  torch::Tensor final_gt;
  if (fc_type == "FC") {
    final_gt = gt;
  } else if (fc_type == "MV-AM") {
    auto mask = cos_theta > gt - margin;
    auto hard_vector = cos_theta.index({mask});
    if (adaptive) {
      cos_theta.index_put_({mask}, (t + 1.0) * hard_vector + t);
    } else {
      cos_theta.index_put_({mask}, hard_vector + t);
    }
    if (easy_margin) {
      final_gt = torch::where(gt > 0, gt - margin, gt);
    } else {
      final_gt = gt - margin;
    }
  } else if (fc_type == "MV-Arc") {
    auto sin_theta = torch::sqrt(1.0 - torch::pow(gt, 2));
    auto cos_theta_m = gt * cos_m - sin_theta * sin_m;
    auto mask = cos_theta > cos_theta_m;
    auto hard_vector = cos_theta.index({mask});
    if (adaptive) {
      cos_theta.index_put_({mask}, (t + 1.0) * hard_vector + t);
    } else {
      cos_theta.index_put_({mask}, hard_vector + t);
    }
    if (easy_margin) {
      final_gt = torch::where(gt > 0, cos_theta_m, gt);
    } else {
      final_gt = cos_theta_m;
    }
  } else {
    throw std::runtime_error("unknown fc type!");
  }
  cos_theta.scatter_(1, label.view({-1, 1}), final_gt);
  cos_theta.mul_(scale);
  return cos_theta;
}

torch::Tensor insightface(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& labels,
                          const std::string& kind, double s, double m) {
  // partial_fc.py
  auto norm_embeddings = normalize(x, 1);
  auto norm_weight_activated = normalize(w, 1);
  auto logits = F::linear(norm_embeddings, norm_weight_activated);
  logits = logits.clamp(-1, 1);

  auto index = torch::where(labels != -1)[0];
  auto cols = labels.index({index}).view(-1);
  auto target_logit = logits.index({index, cols});
  if (kind == "arcface" || kind == "arcface_easy") {
    const double cos_m = std::cos(m), sin_m = std::sin(m), theta = std::cos(M_PI - m), sinmm = std::sin(M_PI - m) * m;
    auto sin_theta = torch::sqrt(1.0 - torch::pow(target_logit, 2));
    auto cos_theta_m = target_logit * cos_m - sin_theta * sin_m;
    torch::Tensor final_target_logit;
    if (kind == "arcface_easy") {
      final_target_logit = torch::where(target_logit > 0, cos_theta_m, target_logit);
    } else {
      final_target_logit = torch::where(target_logit > theta, cos_theta_m, target_logit - sinmm);
    }
    logits.index_put_({index, cols}, final_target_logit);
    return logits * s;
  }
  if (kind == "cosface") {
    auto final_target_logit = target_logit - m;
    logits.index_put_({index, cols}, final_target_logit);
    return logits * s;
  }
  if (kind == "straight_through") {  // CombinedMarginLoss, m1 == 1.0 and m3 == 0.0
    {
      torch::NoGradGuard no_grad;
      target_logit.arccos_();
      logits.arccos_();
      auto final_target_logit = target_logit + m;
      logits.index_put_({index, cols}, final_target_logit);
      logits.cos_();
    }
    return logits * s;
  }
  throw std::runtime_error("unknown insightface kind " + kind);
}

torch::Tensor mxnet_combined(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& gt_label, double s,
                             double m1, double m2, double m3) {
  auto nembedding = normalize(x, 1) * s;
  auto fc7 = F::linear(nembedding, normalize(w, 1));
  auto num_classes = w.size(0);
  if (m1 == 1.0 && m2 == 0.0) {
    auto s_m = s * m3;
    auto gt_one_hot = F::one_hot(gt_label, num_classes).to(fc7.scalar_type()) * s_m;
    return fc7 - gt_one_hot;
  }
  auto zy = fc7.gather(1, gt_label.view({-1, 1})).view(-1);  // mx.sym.pick
  auto cos_t = zy / s;
  auto t = torch::acos(cos_t);
  if (m1 != 1.0) t = t * m1;
  if (m2 > 0.0) t = t + m2;
  auto body = torch::cos(t);
  if (m3 > 0.0) body = body - m3;
  auto new_zy = body * s;
  auto diff = (new_zy - zy).unsqueeze(1);
  auto gt_one_hot = F::one_hot(gt_label, num_classes).to(fc7.scalar_type());
  return fc7 + gt_one_hot * diff;
}

torch::Tensor evolve_sphereface(const torch::Tensor& input, const torch::Tensor& weight, const torch::Tensor& label,
                                int m, int64_t& iter, bool increment, double base, double gamma, double power,
                                double lambda_min, double pi) {
  if (increment) iter += 1;
  double lamb = std::max(lambda_min, base * std::pow(1 + gamma * static_cast<double>(iter), -1 * power));
  auto cos_theta = F::linear(normalize(input, 1), normalize(weight, 1));
  cos_theta = cos_theta.clamp(-1, 1);
  torch::Tensor cos_m_theta;
  switch (m) {  // self.mlambda
    case 0:
      cos_m_theta = cos_theta.pow(0);
      break;
    case 1:
      cos_m_theta = cos_theta.pow(1);
      break;
    case 2:
      cos_m_theta = 2 * cos_theta.pow(2) - 1;
      break;
    case 3:
      cos_m_theta = 4 * cos_theta.pow(3) - 3 * cos_theta;
      break;
    default:
      cos_m_theta = 8 * cos_theta.pow(4) - 8 * cos_theta.pow(2) + 1;
      break;
  }
  auto theta = cos_theta.detach().acos();
  auto k = (m * theta / pi).floor();
  auto phi_theta = torch::pow(-1.0, k) * cos_m_theta - 2 * k;
  auto NormOfFeature = torch::norm(input, 2, 1);
  auto one_hot = torch::zeros(cos_theta.sizes(), cos_theta.options().requires_grad(false));
  one_hot.scatter_(1, label.view({-1, 1}), 1);
  auto output = (one_hot * (phi_theta - cos_theta) / (1 + lamb)) + cos_theta;
  output = output * NormOfFeature.view({-1, 1});
  return output;
}

torch::Tensor curricularface(const torch::Tensor& embbedings_raw, const torch::Tensor& w, const torch::Tensor& label,
                             double m, double s, torch::Tensor& t, double momentum) {
  const double cos_m = std::cos(m), sin_m = std::sin(m), threshold = std::cos(M_PI - m), mm = std::sin(M_PI - m) * m;
  auto kernel = w.t();
  auto embbedings = l2_norm(embbedings_raw, 1);
  auto kernel_norm = l2_norm(kernel, 0);
  auto cos_theta = torch::mm(embbedings, kernel_norm);
  cos_theta = cos_theta.clamp(-1, 1);
  auto target_logit = cos_theta.index({torch::arange(embbedings.size(0)), label}).view({-1, 1});

  auto sin_theta = torch::sqrt(1.0 - torch::pow(target_logit, 2));
  auto cos_theta_m = target_logit * cos_m - sin_theta * sin_m;
  auto mask = cos_theta > cos_theta_m;
  auto final_target_logit = torch::where(target_logit > threshold, cos_theta_m, target_logit - mm);

  auto hard_example = cos_theta.index({mask});
  {
    torch::NoGradGuard no_grad;
    t.copy_(target_logit.mean() * momentum + (1 - momentum) * t);
  }
  cos_theta.index_put_({mask}, hard_example * (t + hard_example));
  cos_theta.scatter_(1, label.view({-1, 1}), final_target_logit);
  auto output = cos_theta * s;
  return output;
}

torch::Tensor adaface(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& label, double m, double h,
                      double s, double t_alpha, torch::Tensor& batch_mean, torch::Tensor& batch_std) {
  const double eps = 1e-3;
  // backbone: norm = torch.norm(x, 2, 1, True); output = torch.div(x, norm)
  auto norms = torch::norm(x, 2, 1, true);
  auto embbedings = torch::div(x, norms);

  auto kernel = w.t();
  auto kernel_norm = l2_norm(kernel, 0);
  auto cosine = torch::mm(embbedings, kernel_norm);
  cosine = cosine.clamp(-1 + eps, 1 - eps);

  auto safe_norms = torch::clip(norms, 0.001, 100);
  safe_norms = safe_norms.clone().detach();
  {
    torch::NoGradGuard no_grad;
    auto mean = safe_norms.mean().detach();
    auto std = safe_norms.std().detach();
    batch_mean.copy_(mean * t_alpha + (1 - t_alpha) * batch_mean);
    batch_std.copy_(std * t_alpha + (1 - t_alpha) * batch_std);
  }
  auto margin_scaler = (safe_norms - batch_mean) / (batch_std + eps);
  margin_scaler = margin_scaler * h;
  margin_scaler = torch::clip(margin_scaler, -1, 1);

  auto m_arc = torch::zeros({label.size(0), cosine.size(1)}, cosine.options().requires_grad(false));
  m_arc.scatter_(1, label.reshape({-1, 1}), 1.0);
  auto g_angular = m * margin_scaler * -1;
  m_arc = m_arc * g_angular;
  auto theta = cosine.acos();
  auto theta_m = torch::clip(theta + m_arc, eps, M_PI - eps);
  cosine = theta_m.cos();

  auto m_cos = torch::zeros({label.size(0), cosine.size(1)}, cosine.options().requires_grad(false));
  m_cos.scatter_(1, label.reshape({-1, 1}), 1.0);
  auto g_add = m + (m * margin_scaler);
  m_cos = m_cos * g_add;
  cosine = cosine - m_cos;
  return cosine * s;
}

torch::Tensor circleloss(const torch::Tensor& feats_raw, const torch::Tensor& w, const torch::Tensor& labels,
                         double margin, double gamma) {
  const double O_p = 1 + margin, O_n = -margin, delta_p = 1 - margin, delta_n = margin;
  auto weight = w.t();
  auto kernel_norm = normalize(weight, 0);
  auto feats = normalize(feats_raw, 1);
  auto cos_theta = torch::mm(feats, kernel_norm);
  cos_theta = cos_theta.clamp(-1, 1);
  auto index_pos = torch::zeros_like(cos_theta, cos_theta.options().requires_grad(false));
  index_pos.scatter_(1, labels.view({-1, 1}), 1);
  auto pos = index_pos.to(torch::kBool);
  auto index_neg = torch::ones_like(cos_theta, cos_theta.options().requires_grad(false));
  index_neg.scatter_(1, labels.view({-1, 1}), 0);
  auto neg = index_neg.to(torch::kBool);

  auto alpha_p = torch::clamp_min(O_p - cos_theta.detach(), 0.);
  auto alpha_n = torch::clamp_min(cos_theta.detach() - O_n, 0.);
  auto logit_p = alpha_p * (cos_theta - delta_p);
  auto logit_n = alpha_n * (cos_theta - delta_n);

  auto output = cos_theta * 1.0;
  output.index_put_({pos}, logit_p.index({pos}));
  output.index_put_({neg}, logit_n.index({neg}));
  output.mul_(gamma);
  return output;
}

}  // namespace facetrain::testing::reference
