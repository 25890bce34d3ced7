build/plugin/crucible.o: plugin/crucible.c plugin/../common/base64.h \
 plugin/../common/log.h plugin/../common/parse.h plugin/upstairs.h \
 plugin/../common/crypt.h plugin/upstairs_int.h plugin/../common/proto.h \
 plugin/client.h
plugin/../common/base64.h:
plugin/../common/log.h:
plugin/../common/parse.h:
plugin/upstairs.h:
plugin/../common/crypt.h:
plugin/upstairs_int.h:
plugin/../common/proto.h:
plugin/client.h:
