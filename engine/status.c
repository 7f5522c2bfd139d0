/*
 * status.c - the texts and names of tc_status values.
 */
#include "tiercache.h"

const char *tc_strerror(tc_status st)
{
    switch (st) {
#define TC_STATUS_TEXT_(name, value, text) \
    case TC_##name:                        \
        return text;
        TC_STATUS_MAP(TC_STATUS_TEXT_)
#undef TC_STATUS_TEXT_
    }
    return "unknown status";
}

const char *tc_status_name(tc_status st)
{
    switch (st) {
#define TC_STATUS_NAME_(name, value, text) \
    case TC_##name:                        \
        return #name;
        TC_STATUS_MAP(TC_STATUS_NAME_)
#undef TC_STATUS_NAME_
    }
    return "UNKNOWN";
}

const char *tc_version(void)
{
    return TC_VERSION_STRING;
}
