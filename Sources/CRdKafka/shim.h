#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

// Macros with casts are not imported into Swift; these give their values.
static inline int32_t ferry_rd_kafka_partition_ua(void) { return RD_KAFKA_PARTITION_UA; }
static inline int64_t ferry_rd_kafka_offset_beginning(void) { return RD_KAFKA_OFFSET_BEGINNING; }
static inline int64_t ferry_rd_kafka_offset_end(void) { return RD_KAFKA_OFFSET_END; }
