/*
 * fuzz_mqtt_packet.c - libFuzzer target for the MQTT 3.1.1 / 5.0 codec
 * (proto/mqtt/packet.c): frame check, every decoder, properties, the
 * iterators and every encoder.
 *
 * Input (layout in fuzz_common.h): a control byte FZ_MQTT_* (version,
 * direction, state, packet size limit), then packets back to back, as a
 * connection receives them.
 *
 * The target cuts the stream with mqtt_frame_check and decodes each frame
 * in the connection's state: before a CONNECT (FZ_MQTT_BEFORE_CONNECT,
 * from a client only) the version is 0 and only a CONNECT is valid; a
 * CONNECT that decodes sets the version for the packets after it. A frame
 * that fails to decode does not end the stream, so one bad packet does
 * not hide the ones behind it. Each frame is decoded from a heap copy of
 * exactly its size, so ASan sees a read one byte past it.
 *
 * Beyond "no crash, no out-of-bounds read, no undefined behaviour, no
 * leak":
 *  - frame check: a frame it accepts is whole, and one byte less of it
 *    is CFX_NEED_MORE; its other results are the documented ones;
 *  - a failed decode names a reason code that the broker may send in
 *    the answer it owes (CONNACK before CONNECT, else DISCONNECT), and a
 *    static description;
 *  - every view of a decoded packet lies inside its frame, counts are
 *    within their limits, and the iterators hand out exactly the counts;
 *  - round trip: a decoded packet re-encodes (never longer than the
 *    input: the encoding is canonical), decodes again to an equal packet,
 *    and encodes again to the same bytes; the same holds when its
 *    repeatable properties and entries are handed to the encoder as arrays
 *    instead of its raw lists.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "fuzz_common.h"
#include "proto/mqtt/packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* CFX_FUZZ_VERBOSE=1: one line per frame (type, result, reason). */
static int verbose = -1;

static uint8_t *dup_exact(const uint8_t *p, size_t len)
{
	uint8_t *d = malloc(len ? len : 1);

	if (!d)
		abort();
	if (len)
		memcpy(d, p, len);
	return d;
}

static void check_view(struct cfx_view v, const uint8_t *frame, size_t len)
{
	if (v.p)
		FZ_CHECK(fz_view_within(v, frame, len));
	else
		FZ_CHECK(v.len == 0);
	fz_touch(v.p, v.len);
}

/* ------------------------------------------------------------------------
 * Views and counts of a decoded packet
 * ------------------------------------------------------------------------ */

static void check_props(const struct mqtt_props *pr, const uint8_t *f, size_t len)
{
	struct mqtt_prop_iter it;
	struct mqtt_user_prop up;
	uint32_t n = 0, id;

	check_view(pr->raw, f, len);
	FZ_CHECK(pr->user_props == NULL && pr->sub_ids == NULL);
	FZ_CHECK(pr->user_prop_count <= MQTT_USER_PROPERTIES_MAX);
	FZ_CHECK(pr->sub_id_count <= MQTT_SUBSCRIPTION_IDS_MAX);
	FZ_CHECK(mqtt_props_size(pr) == pr->raw.len);
	for (uint32_t pid = 0; pid < 64; pid++) {
		const struct mqtt_prop_info *info = mqtt_prop_lookup(pid);

		if (!(pr->present & (1ull << pid)))
			continue;
		FZ_CHECK(info != NULL);
		if (info->type == MQTT_PT_UTF8 || info->type == MQTT_PT_BINARY) {
			struct cfx_view v;

			memcpy(&v, (const uint8_t *)pr + info->offset, sizeof v);
			check_view(v, f, len);
			if (info->type == MQTT_PT_UTF8)
				FZ_CHECK(mqtt_utf8_is_valid(v.p, v.len));
		}
	}
	mqtt_prop_iter_init(&it, pr);
	while (mqtt_props_next_user(&it, &up)) {
		check_view(up.name, f, len);
		check_view(up.value, f, len);
		FZ_CHECK(mqtt_utf8_is_valid(up.name.p, up.name.len));
		FZ_CHECK(mqtt_utf8_is_valid(up.value.p, up.value.len));
		n++;
	}
	FZ_CHECK(n == pr->user_prop_count);
	n = 0;
	mqtt_prop_iter_init(&it, pr);
	while (mqtt_props_next_sub_id(&it, &id)) {
		FZ_CHECK(id >= 1 && id <= MQTT_VARINT_MAX);
		n++;
	}
	FZ_CHECK(n == pr->sub_id_count);
}

static void check_packet(const struct mqtt_packet *pkt, const uint8_t *f, size_t len)
{
	struct mqtt_topic_iter it;
	struct mqtt_subscription e;
	struct cfx_view share, tf;
	uint32_t n = 0;

	switch (pkt->type) {
	case MQTT_CONNECT:
		FZ_CHECK(pkt->connect.version == MQTT_V311 || pkt->connect.version == MQTT_V5);
		check_props(&pkt->connect.props, f, len);
		check_props(&pkt->connect.will.props, f, len);
		check_view(pkt->connect.client_id, f, len);
		check_view(pkt->connect.will.topic, f, len);
		check_view(pkt->connect.will.payload, f, len);
		check_view(pkt->connect.username, f, len);
		check_view(pkt->connect.password, f, len);
		if (pkt->connect.has_will)
			FZ_CHECK(mqtt_topic_name_check(pkt->connect.will.topic) == 0);
		FZ_CHECK(pkt->connect.will.qos <= 2);
		break;
	case MQTT_CONNACK:
		FZ_CHECK(mqtt_reason_is_allowed(MQTT_CONNACK, pkt->connack.reason));
		check_props(&pkt->connack.props, f, len);
		break;
	case MQTT_PUBLISH:
		FZ_CHECK(pkt->publish.qos <= 2);
		FZ_CHECK((pkt->publish.qos == 0) == (pkt->publish.packet_id == 0));
		check_view(pkt->publish.topic, f, len);
		check_view(pkt->publish.payload, f, len);
		check_props(&pkt->publish.props, f, len);
		if (pkt->publish.topic.len)
			FZ_CHECK(mqtt_topic_name_check(pkt->publish.topic) == 0);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		FZ_CHECK(pkt->ack.packet_id != 0);
		FZ_CHECK(mqtt_reason_is_allowed(pkt->type, pkt->ack.reason));
		check_props(&pkt->ack.props, f, len);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		FZ_CHECK(pkt->subscribe.packet_id != 0);
		FZ_CHECK(pkt->subscribe.topic_count >= 1);
		FZ_CHECK(pkt->subscribe.topic_count <= MQTT_SUBSCRIBE_TOPICS_MAX);
		FZ_CHECK(pkt->subscribe.topics == NULL);
		check_view(pkt->subscribe.raw, f, len);
		check_props(&pkt->subscribe.props, f, len);
		mqtt_topic_iter_init(&it, pkt->type, &pkt->subscribe);
		while (mqtt_topic_next(&it, &e)) {
			check_view(e.filter, f, len);
			check_view(e.share_name, f, len);
			check_view(e.topic_filter, f, len);
			FZ_CHECK(mqtt_topic_filter_parse(e.filter, &share, &tf) == 0);
			FZ_CHECK(e.qos <= 2 && e.retain_handling <= 2);
			n++;
		}
		FZ_CHECK(n == pkt->subscribe.topic_count);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		FZ_CHECK(pkt->suback.packet_id != 0);
		FZ_CHECK(pkt->suback.reasons.len <= MQTT_SUBSCRIBE_TOPICS_MAX);
		check_view(pkt->suback.reasons, f, len);
		check_props(&pkt->suback.props, f, len);
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		FZ_CHECK(mqtt_reason_is_allowed(pkt->type, pkt->disconnect.reason));
		check_props(&pkt->disconnect.props, f, len);
		break;
	default:
		FZ_CHECK(pkt->type == MQTT_PINGREQ || pkt->type == MQTT_PINGRESP);
		break;
	}
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

/* Arrays the repeatable lists are copied into for the second encoding. */
struct arrays {
	struct mqtt_user_prop users[2][MQTT_USER_PROPERTIES_MAX];
	uint32_t sub_ids[2][MQTT_SUBSCRIPTION_IDS_MAX];
	struct mqtt_subscription topics[MQTT_SUBSCRIBE_TOPICS_MAX];
};

static struct arrays arr;

static void props_to_arrays(struct mqtt_props *pr, int slot)
{
	struct mqtt_prop_iter it;
	uint32_t n = 0;

	mqtt_prop_iter_init(&it, pr);
	while (n < MQTT_USER_PROPERTIES_MAX && mqtt_props_next_user(&it, &arr.users[slot][n]))
		n++;
	FZ_CHECK(n == pr->user_prop_count);
	n = 0;
	mqtt_prop_iter_init(&it, pr);
	while (n < MQTT_SUBSCRIPTION_IDS_MAX && mqtt_props_next_sub_id(&it, &arr.sub_ids[slot][n]))
		n++;
	FZ_CHECK(n == pr->sub_id_count);
	pr->user_props = arr.users[slot];
	pr->sub_ids = arr.sub_ids[slot];
	/* The encoder must not need raw any more. */
	pr->raw = (struct cfx_view){ NULL, 0 };
}

/* A copy of `pkt` whose lists are arrays. */
static struct mqtt_packet to_arrays(const struct mqtt_packet *pkt)
{
	struct mqtt_packet c = *pkt;
	struct mqtt_topic_iter it;
	uint32_t n = 0;

	switch (c.type) {
	case MQTT_CONNECT:
		props_to_arrays(&c.connect.props, 0);
		props_to_arrays(&c.connect.will.props, 1);
		break;
	case MQTT_CONNACK:
		props_to_arrays(&c.connack.props, 0);
		break;
	case MQTT_PUBLISH:
		props_to_arrays(&c.publish.props, 0);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		props_to_arrays(&c.ack.props, 0);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		props_to_arrays(&c.subscribe.props, 0);
		mqtt_topic_iter_init(&it, c.type, &pkt->subscribe);
		while (n < MQTT_SUBSCRIBE_TOPICS_MAX && mqtt_topic_next(&it, &arr.topics[n]))
			n++;
		FZ_CHECK(n == c.subscribe.topic_count);
		c.subscribe.topics = arr.topics;
		c.subscribe.raw = (struct cfx_view){ NULL, 0 };
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		props_to_arrays(&c.suback.props, 0);
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		props_to_arrays(&c.disconnect.props, 0);
		break;
	default:
		break;
	}
	return c;
}

/* Encodes `pkt`, decodes the bytes and checks they give `want`; returns
 * the encoding (the caller frees it). */
static struct cfx_writer reencode(const struct mqtt_packet *pkt, const struct mqtt_packet *want,
				  int version, enum mqtt_dir dir)
{
	struct cfx_writer wr;
	struct mqtt_packet again;
	struct mqtt_err err;
	size_t n, frame = 0;
	uint8_t *copy;
	int dec_version = pkt->type == MQTT_CONNECT ? 0 : version;

	cfx_writer_init(&wr, 0);
	n = mqtt_encode(&wr, version, pkt);
	FZ_CHECK(n == wr.len);
	FZ_CHECK(mqtt_frame_check(wr.p, wr.len, MQTT_PACKET_BYTES_PROTOCOL_MAX, &frame) == 0);
	FZ_CHECK(frame == wr.len);
	copy = dup_exact(wr.p, wr.len);
	FZ_CHECK(mqtt_decode(copy, wr.len, dec_version, dir, &again, &err) == 0);
	FZ_CHECK(mqtt_packet_equal(want, &again));
	FZ_CHECK(mqtt_packet_equal(&again, want));
	check_packet(&again, copy, wr.len);
	free(copy);
	return wr;
}

static void roundtrip(const struct mqtt_packet *pkt, size_t frame_len, int version,
		      enum mqtt_dir dir)
{
	struct cfx_writer w1, w2, w3;
	struct mqtt_packet viaarr;

	FZ_CHECK(mqtt_packet_equal(pkt, pkt));
	/* Encode the decoded struct as it is (lists from raw). */
	w1 = reencode(pkt, pkt, version, dir);
	FZ_CHECK(w1.len <= frame_len);
	/* Decoding that and encoding again gives the same bytes. */
	{
		struct mqtt_packet again;
		struct mqtt_err err;
		uint8_t *copy = dup_exact(w1.p, w1.len);

		FZ_CHECK(mqtt_decode(copy, w1.len, pkt->type == MQTT_CONNECT ? 0 : version, dir,
				     &again, &err) == 0);
		w2 = reencode(&again, pkt, version, dir);
		FZ_CHECK(w2.len == w1.len && memcmp(w1.p, w2.p, w1.len) == 0);
		free(copy);
	}
	/* Lists handed over as arrays: same packet, same bytes. */
	viaarr = to_arrays(pkt);
	FZ_CHECK(mqtt_packet_equal(&viaarr, pkt));
	w3 = reencode(&viaarr, pkt, version, dir);
	FZ_CHECK(w3.len == w1.len && memcmp(w1.p, w3.p, w1.len) == 0);
	cfx_writer_free(&w1);
	cfx_writer_free(&w2);
	cfx_writer_free(&w3);
}

/* ------------------------------------------------------------------------
 * The stream
 * ------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t ctrl;
	enum mqtt_dir dir;
	size_t limit, pos;
	int version;

	if (verbose < 0)
		verbose = getenv("CFX_FUZZ_VERBOSE") != NULL;
	if (size < FZ_MQTT_CTRL_BYTES)
		return 0;
	ctrl = data[0];
	dir = (ctrl & FZ_MQTT_FROM_SERVER) ? MQTT_FROM_SERVER : MQTT_FROM_CLIENT;
	version = (ctrl & FZ_MQTT_V5) ? MQTT_V5 : MQTT_V311;
	if (dir == MQTT_FROM_CLIENT && (ctrl & FZ_MQTT_BEFORE_CONNECT))
		version = 0;
	limit = (ctrl & FZ_MQTT_SMALL_LIMIT) ? FZ_MQTT_SMALL_LIMIT_BYTES : MQTT_PACKET_BYTES_MAX;

	/* Also on a copy of exactly the stream's bytes: the frame check reads
	 * at most the five header bytes. */
	pos = FZ_MQTT_CTRL_BYTES;
	while (pos < size) {
		uint8_t *stream = dup_exact(data + pos, size - pos);
		size_t left = size - pos, frame_len = 0, frame2 = 0;
		struct mqtt_packet pkt;
		struct mqtt_err err;
		uint8_t *frame;
		int rc;

		rc = mqtt_frame_check(stream, left, limit, &frame_len);
		FZ_CHECK(rc == 0 || rc == CFX_NEED_MORE || rc == CFX_EPARSE || rc == CFX_E2BIG);
		if (rc == CFX_E2BIG)
			FZ_CHECK(mqtt_frame_check(stream, left, MQTT_PACKET_BYTES_PROTOCOL_MAX,
						  &frame2) != CFX_EPARSE);
		free(stream);
		if (rc != 0) {
			if (verbose)
				fprintf(stderr, "  frame check at %zu: %s\n", pos, cfx_err_name(rc));
			break;
		}
		FZ_CHECK(frame_len >= 2 && frame_len <= left && frame_len <= limit);
		FZ_CHECK(mqtt_frame_check(data + pos, frame_len - 1, limit, &frame2) ==
			 CFX_NEED_MORE);

		frame = dup_exact(data + pos, frame_len);
		rc = mqtt_decode(frame, frame_len, version, dir, &pkt, &err);
		if (verbose && rc == 0)
			fprintf(stderr, "  v%d %s, %zu bytes: ok\n", version,
				mqtt_type_name(pkt.type), frame_len);
		else if (verbose)
			fprintf(stderr, "  v%d %s, %zu bytes: 0x%02x %s (%s)\n", version,
				mqtt_type_name(frame[0] >> 4), frame_len, err.reason,
				mqtt_reason_name(err.reason), err.desc);
		if (rc == 0) {
			check_packet(&pkt, frame, frame_len);
			if (pkt.type == MQTT_CONNECT) {
				FZ_CHECK(version == 0);
				version = pkt.connect.version;
			}
			roundtrip(&pkt, frame_len, version, dir);
		} else {
			FZ_CHECK(rc == CFX_EPARSE);
			FZ_CHECK(err.desc != NULL);
			fz_touch(err.desc, strlen(err.desc));
			FZ_CHECK(mqtt_reason_is_allowed(version ? MQTT_DISCONNECT : MQTT_CONNACK,
							err.reason));
			FZ_CHECK(err.reason >= 0x80);
			if (err.version)
				FZ_CHECK(version == 0);
		}
		free(frame);
		pos += frame_len;
	}
	return 0;
}
