// Whether a protobuf message may hold unknown fields, without reflection.
#ifndef RAPPORT_LIB_UTIL_UNKNOWN_FIELDS_H_
#define RAPPORT_LIB_UTIL_UNKNOWN_FIELDS_H_

#include "google/protobuf/message_lite.h"

namespace rapport {

namespace internal {
// Proto3 messages keep the fields they do not know (from a newer writer), and
// the fast paths that write a message's bytes by hand (the event fingerprint,
// the snapshot's rows) must hand such a message to protobuf instead. Asked
// through reflection (Reflection::GetUnknownFields) this costs a call and a
// descriptor lookup behind a thread-local once-flag per message: more than
// the fast paths save. So it reads the bit the generated code reads:
// MessageLite's protected _internal_metadata_, reached through a pointer to
// member formed in a derived class, which the access rules allow
// ([class.protected]). Protobuf 3.21's layout: if it changes, this fails to
// compile rather than misbehaves.
struct MetadataAccess : google::protobuf::MessageLite {
  static bool MayHaveUnknownFields(const google::protobuf::MessageLite& m) {
    return (m.*&MetadataAccess::_internal_metadata_).have_unknown_fields();
  }
};
}  // namespace internal

// True if `m` holds unknown fields, and also (rarely) after they were
// cleared: the bit stays set, and the caller merely takes protobuf's path.
inline bool MayHaveUnknownFields(const google::protobuf::MessageLite& m) {
  return internal::MetadataAccess::MayHaveUnknownFields(m);
}

}  // namespace rapport

#endif  // RAPPORT_LIB_UTIL_UNKNOWN_FIELDS_H_
