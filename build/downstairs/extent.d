build/downstairs/extent.o: downstairs/extent.c \
 downstairs/../common/crypt.h downstairs/../common/geom.h \
 downstairs/../common/proto.h downstairs/../common/log.h \
 downstairs/extent.h downstairs/../common/proto.h
downstairs/../common/crypt.h:
downstairs/../common/geom.h:
downstairs/../common/proto.h:
downstairs/../common/log.h:
downstairs/extent.h:
downstairs/../common/proto.h:
