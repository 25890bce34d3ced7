build/downstairs/server_sched.o: downstairs/server_sched.c \
 downstairs/server_sched.h
downstairs/server_sched.h:
