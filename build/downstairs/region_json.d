build/downstairs/region_json.o: downstairs/region_json.c \
 downstairs/../common/base64.h downstairs/../common/geom.h \
 downstairs/../common/proto.h downstairs/../common/log.h \
 downstairs/extent.h downstairs/../common/proto.h
downstairs/../common/base64.h:
downstairs/../common/geom.h:
downstairs/../common/proto.h:
downstairs/../common/log.h:
downstairs/extent.h:
downstairs/../common/proto.h:
