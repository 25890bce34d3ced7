build/downstairs/main.o: downstairs/main.c downstairs/../common/geom.h \
 downstairs/../common/proto.h downstairs/../common/log.h \
 downstairs/../common/parse.h downstairs/extent.h \
 downstairs/../common/proto.h downstairs/region.h downstairs/server.h
downstairs/../common/geom.h:
downstairs/../common/proto.h:
downstairs/../common/log.h:
downstairs/../common/parse.h:
downstairs/extent.h:
downstairs/../common/proto.h:
downstairs/region.h:
downstairs/server.h:
