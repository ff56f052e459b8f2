#pragma once
// facetrain's io layer: one include for all of it.
//
//   #include <facetrain/io.h>
//   facetrain::io::load_state_dict(*net, "backbone.pth");   // a torch.save(model.state_dict()) file
//   facetrain::io::save_state_dict(*net, "out.pth");        // torch.load() in Python reads it back
//
// io/pickle.h is the allow-listed pickle reader (and minimal writer) underneath; it also reads
// insightface's verification .bin files.

#include "facetrain/io/pickle.h"
#include "facetrain/io/state_dict.h"
