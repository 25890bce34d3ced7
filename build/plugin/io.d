build/plugin/io.o: plugin/io.c plugin/../common/geom.h \
 plugin/../common/proto.h plugin/../common/log.h plugin/upstairs_int.h \
 plugin/../common/proto.h plugin/client.h plugin/upstairs.h \
 plugin/../common/crypt.h plugin/../common/parse.h
plugin/../common/geom.h:
plugin/../common/proto.h:
plugin/../common/log.h:
plugin/upstairs_int.h:
plugin/../common/proto.h:
plugin/client.h:
plugin/upstairs.h:
plugin/../common/crypt.h:
plugin/../common/parse.h:
